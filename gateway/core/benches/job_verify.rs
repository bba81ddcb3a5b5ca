//! Verification of a 3 MB job (the largest printlet G-code DESIGN.md expects). Target: < 20 ms.
//!
//! * `authenticate`: envelope decode, a 2-of-3 ES256 threshold, the strict CBOR re-encoding check
//!   and SHA-256 of the G-code, on a synthetic 3 MiB program.
//! * `verify`: both stages — the above plus the policy binding and the whole design-space check
//!   (parse, virtual print, per-unit dose) — on real PrusaSlicer output given as
//!   `DOSEGATE_BENCH_GCODE` and `DOSEGATE_BENCH_POLICY` (made by `scripts/bench-job.sh`), with the
//!   prescription's dose and
//!   unit count taken from the program's own analysis so the job is accepted.
//!
//! Run: `scripts/bench-job.sh` (or `cargo bench -p dosegate-core --bench job_verify`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use dosegate_core::envelope::{self, ContentType, Signer, SoftwareKey};
use dosegate_core::job::{
    self, GatewayContext, GcodeEncoding, GcodePayload, HeldPolicy, Job, JobLimits, JobPolicy,
    JobPrescription, MemoryHistory,
};
use dosegate_core::prescription::Formulation;
use dosegate_core::trust::{RoleSpec, Roles, TrustRoot, TrustedRoot};
use sha2::{Digest, Sha256};

const NOW: u64 = 1_795_000_000;

fn key(n: u8) -> SoftwareKey {
    let mut s = [0x55u8; 32];
    s[31] = n;
    SoftwareKey::from_bytes(&s).expect("key")
}

fn gcode(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 64);
    let mut i = 0u64;
    while out.len() < len {
        let line = format!(
            "G1 X{}.{} Y{}.{} E{}.{:05}\n",
            90 + i % 20,
            i % 10,
            95 + i % 10,
            i % 7,
            i / 1000,
            i % 100_000
        );
        out.extend_from_slice(line.as_bytes());
        i += 1;
    }
    out
}

/// Minimum and median of `ROUNDS` timed runs: on a machine shared with other builds the minimum
/// is the figure least disturbed by them (criterion's mean is printed beside it).
fn min_median<T>(what: &str, mut f: impl FnMut() -> T) {
    const ROUNDS: usize = 40;
    let mut times: Vec<Duration> = (0..ROUNDS)
        .map(|_| {
            let t = Instant::now();
            std::hint::black_box(f());
            t.elapsed()
        })
        .collect();
    times.sort();
    println!(
        "{what}\n                        min {:.3} ms, median {:.3} ms of {ROUNDS} runs",
        times[0].as_secs_f64() * 1e3,
        times[ROUNDS / 2].as_secs_f64() * 1e3
    );
}

fn bench(c: &mut Criterion) {
    let root_key = key(1);
    let jobs = [key(2), key(3), key(4)];
    let mut keys = BTreeMap::new();
    for k in std::iter::once(&root_key).chain(&jobs) {
        let p = k.public_key();
        keys.insert(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()));
    }
    let mut ids: Vec<_> = jobs.iter().map(|k| k.public_key().key_id()).collect();
    ids.sort();
    let one = RoleSpec {
        keyids: vec![root_key.public_key().key_id()],
        threshold: 1,
    };
    let meta = TrustRoot {
        keys,
        roles: Roles {
            jobs: RoleSpec {
                keyids: ids,
                threshold: 2,
            },
            root: one.clone(),
            models: one.clone(),
            policies: one.clone(),
            revocation: one,
        },
        hub_id: "hub.bench".into(),
        expires: NOW + 86_400,
        version: 1,
    };
    let root_bytes = envelope::sign(
        ContentType::TrustRoot,
        &meta.to_cbor().expect("cbor"),
        &[&root_key],
    )
    .expect("sign");
    let root = TrustedRoot::pin(&root_bytes, NOW).expect("pin");
    let g = gcode(3 * 1024 * 1024);
    let job = Job {
        seq: 1,
        gcode: GcodePayload {
            bytes: g.clone().into(),
            encoding: GcodeEncoding::Identity,
        },
        job_id: "bench-1".into(),
        models: vec![],
        policy: JobPolicy {
            id: "p".into(),
            sha256: [0; 32],
            version: 1,
        },
        issued_at: NOW,
        expires_at: NOW + 3600,
        gateway_id: "gw".into(),
        formulation: Formulation {
            ink_lot: "L".into(),
            api_fraction: 0.1,
            density_g_cm3: 1.25,
        },
        prescription: JobPrescription {
            units: 1,
            dose_mg: 10.0,
            product: "p".into(),
            patient_ref: "pt".into(),
            gcode_sha256: Sha256::digest(&g).into(),
            tolerance_pct: 5.0,
        },
    };
    let signers: [&dyn Signer; 2] = [&jobs[0], &jobs[1]];
    let bytes = job::sign(&job, &signers).expect("sign job");
    let ctx = GatewayContext {
        gateway_id: "gw",
        now: NOW,
        limits: JobLimits::default(),
    };
    let history = MemoryHistory::default();
    min_median("authenticate 3 MiB job: best of", || {
        job::authenticate(&bytes, &root, &ctx, &history).expect("valid")
    });
    c.bench_function(
        "authenticate 3 MiB job (2-of-3 ES256, CBOR, SHA-256)",
        |b| {
            b.iter(|| job::authenticate(&bytes, &root, &ctx, &history).expect("valid"));
        },
    );
}

#[expect(
    clippy::too_many_lines,
    reason = "builds a trust root, a policy and a real job in order"
)]
fn bench_full(c: &mut Criterion) {
    let Some(path) = std::env::var_os("DOSEGATE_BENCH_GCODE") else {
        eprintln!(
            "verify: set DOSEGATE_BENCH_GCODE to a real-slicer program (scripts/bench-job.sh)"
        );
        return;
    };
    let gcode = std::fs::read(&path).expect("read the bench G-code");
    let manifest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let policy_path = std::env::var_os("DOSEGATE_BENCH_POLICY").map_or_else(
        || manifest.join("../../policies/fdm-hctz-printlet.toml"),
        std::path::PathBuf::from,
    );
    let policy_bytes = std::fs::read(policy_path).expect("policy");
    let held = HeldPolicy::from_bytes(&policy_bytes).expect("valid policy");
    let root_key = key(1);
    let jobs_key = key(2);
    let mut keys = BTreeMap::new();
    for k in [&root_key, &jobs_key] {
        let p = k.public_key();
        keys.insert(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()));
    }
    let one = |k: &SoftwareKey| RoleSpec {
        keyids: vec![k.public_key().key_id()],
        threshold: 1,
    };
    let meta = TrustRoot {
        keys,
        roles: Roles {
            jobs: one(&jobs_key),
            root: one(&root_key),
            models: one(&root_key),
            policies: one(&root_key),
            revocation: one(&root_key),
        },
        hub_id: "hub.bench".into(),
        expires: NOW + 86_400,
        version: 1,
    };
    let root_bytes = envelope::sign(
        ContentType::TrustRoot,
        &meta.to_cbor().expect("cbor"),
        &[&root_key],
    )
    .expect("sign");
    let root = TrustedRoot::pin(&root_bytes, NOW).expect("pin");
    let mut job = Job {
        seq: 1,
        gcode: GcodePayload {
            bytes: gcode.clone().into(),
            encoding: GcodeEncoding::Identity,
        },
        job_id: "bench-2".into(),
        models: vec![],
        policy: JobPolicy {
            id: held.policy().id().to_owned(),
            sha256: held.sha256(),
            version: held.policy().version(),
        },
        issued_at: NOW,
        expires_at: NOW + 3600,
        gateway_id: "gw".into(),
        formulation: Formulation {
            ink_lot: "L".into(),
            api_fraction: 0.1,
            density_g_cm3: 1.25,
        },
        prescription: JobPrescription {
            units: 1,
            dose_mg: 10.0,
            product: held.policy().product().to_owned(),
            patient_ref: "pt".into(),
            gcode_sha256: Sha256::digest(&gcode).into(),
            tolerance_pct: 5.0,
        },
    };
    // Prescribe exactly what the program prints (its unit count from DOSEGATE_BENCH_UNITS), so
    // the job is accepted.
    job.prescription.units = std::env::var("DOSEGATE_BENCH_UNITS")
        .ok()
        .and_then(|u| u.parse().ok())
        .unwrap_or(1);
    let analysis =
        dosegate_core::policy::check(held.policy(), &job.to_prescription(), &gcode).analysis;
    job.prescription.dose_mg = analysis.dose_mg;
    let bytes = job::sign(&job, &[&jobs_key as &dyn Signer]).expect("sign job");
    let ctx = GatewayContext {
        gateway_id: "gw",
        now: NOW,
        limits: JobLimits::default(),
    };
    let history = MemoryHistory::default();
    if let Err(e) = job::verify(&bytes, &root, &ctx, &history, &held) {
        eprintln!("verify: the bench job is refused ({e}); not measured");
        return;
    }
    let name = format!(
        "verify {:.2} MB real-slicer job (both stages)",
        gcode.len() as f64 / 1e6
    );
    min_median(&format!("{name}: best of"), || {
        job::verify(&bytes, &root, &ctx, &history, &held).expect("valid")
    });
    c.bench_function(&name, |b| {
        b.iter(|| job::verify(&bytes, &root, &ctx, &history, &held).expect("valid"));
    });
}

criterion_group!(benches, bench, bench_full);
criterion_main!(benches);

use super::*;
use crate::envelope::{Signer, SoftwareKey};
use crate::trust::{RoleSpec, Roles, TrustRoot};
use std::collections::BTreeMap;

fn key(n: u8) -> SoftwareKey {
    let mut secret = [0u8; 32];
    secret[0] = 0x33;
    secret[31] = n;
    SoftwareKey::from_bytes(&secret).unwrap()
}

struct Hub {
    root_key: SoftwareKey,
    jobs: Vec<SoftwareKey>,
    trusted: TrustedRoot,
}

fn hub(jobs_threshold: u32) -> Hub {
    let root_key = key(1);
    let jobs = vec![key(10), key(11)];
    let mut keys = BTreeMap::new();
    for k in std::iter::once(&root_key).chain(&jobs) {
        let p = k.public_key();
        keys.insert(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()));
    }
    let mut job_ids: Vec<_> = jobs.iter().map(|k| k.public_key().key_id()).collect();
    job_ids.sort();
    let root_spec = RoleSpec {
        keyids: vec![root_key.public_key().key_id()],
        threshold: 1,
    };
    let root = TrustRoot {
        keys,
        roles: Roles {
            jobs: RoleSpec {
                keyids: job_ids,
                threshold: jobs_threshold,
            },
            root: root_spec.clone(),
            models: root_spec.clone(),
            policies: root_spec.clone(),
            revocation: root_spec,
        },
        hub_id: "hub.test".into(),
        expires: NOW + 365 * 86400,
        version: 1,
    };
    let bytes = envelope::sign(
        ContentType::TrustRoot,
        &root.to_cbor().unwrap(),
        &[&root_key],
    )
    .unwrap();
    let trusted = TrustedRoot::pin(&bytes, NOW).unwrap();
    Hub {
        root_key,
        jobs,
        trusted,
    }
}

const NOW: u64 = 1_800_000_000;
const GCODE: &[u8] = b"M82\nG28\nG1 X10 Y10 E1 F1200\n";

fn job() -> Job {
    Job {
        seq: 7,
        gcode: GcodePayload {
            bytes: GCODE.to_vec().into(),
            encoding: GcodeEncoding::Identity,
        },
        job_id: "job-0007".into(),
        models: vec!["nir-dyrby2002".into()],
        policy: JobPolicy {
            id: "fdm-hctz-printlet".into(),
            sha256: [7; 32],
            version: 1,
        },
        issued_at: NOW - 60,
        expires_at: NOW + 3600,
        gateway_id: "spoke-01".into(),
        formulation: Formulation {
            ink_lot: "LOT-1".into(),
            api_fraction: 0.1,
            density_g_cm3: 1.25,
        },
        prescription: JobPrescription {
            units: 1,
            dose_mg: 12.5,
            product: "hctz-printlet".into(),
            patient_ref: "pt-1".into(),
            gcode_sha256: Sha256::digest(GCODE).into(),
            tolerance_pct: 7.5,
        },
    }
}

fn ctx() -> GatewayContext<'static> {
    GatewayContext {
        gateway_id: "spoke-01",
        now: NOW,
        limits: JobLimits::default(),
    }
}

fn check(bytes: &[u8], hub: &Hub) -> Result<AuthenticJob, JobError> {
    authenticate(bytes, &hub.trusted, &ctx(), &MemoryHistory::default())
}

fn code(r: Result<AuthenticJob, JobError>) -> &'static str {
    r.map_or_else(|e| e.code(), |_| "ACCEPT")
}

#[test]
fn payload_is_deterministic_cbor() {
    let bytes = job().to_cbor().unwrap();
    let value: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
    assert!(cbor::is_deterministic_value(&value));
}

#[test]
fn accepts_a_valid_job_and_exposes_its_gcode() {
    let h = hub(1);
    let bytes = sign(&job(), &[&h.jobs[0]]).unwrap();
    let a = check(&bytes, &h).unwrap();
    assert_eq!(a.gcode(), GCODE);
    assert_eq!(a.signers(), &[h.jobs[0].public_key().key_id()]);
}

#[test]
fn accepts_zstd_compressed_gcode() {
    let h = hub(1);
    let mut j = job();
    j.gcode = GcodePayload {
        bytes: ruzstd::encoding::compress_to_vec(
            GCODE,
            ruzstd::encoding::CompressionLevel::Fastest,
        )
        .into(),
        encoding: GcodeEncoding::Zstd,
    };
    let a = check(&sign(&j, &[&h.jobs[0]]).unwrap(), &h).unwrap();
    assert_eq!(a.gcode(), GCODE);
}

#[test]
fn rejects_zstd_bomb_beyond_the_cap() {
    let big = vec![b'G'; 2 * 1024 * 1024];
    let payload = GcodePayload {
        bytes: ruzstd::encoding::compress_to_vec(
            &big[..],
            ruzstd::encoding::CompressionLevel::Fastest,
        )
        .into(),
        encoding: GcodeEncoding::Zstd,
    };
    assert!(payload.bytes.len() < 64 * 1024);
    assert_eq!(
        decode_gcode(&payload, 1024 * 1024),
        Err(JobError::GcodeTooLarge { max: 1024 * 1024 })
    );
}

#[test]
fn each_claim_attack_has_its_own_code() {
    let h = hub(1);
    let j = job();
    let signed = |j: &Job| sign(j, &[&h.jobs[0]]).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "JOB_WRONG_GATEWAY",
            signed(&Job {
                gateway_id: "spoke-02".into(),
                ..j.clone()
            }),
        ),
        (
            "JOB_EXPIRED",
            signed(&Job {
                issued_at: NOW - 7200,
                expires_at: NOW - 3600,
                ..j.clone()
            }),
        ),
        (
            "JOB_NOT_YET_VALID",
            signed(&Job {
                issued_at: NOW + 3600,
                expires_at: NOW + 7200,
                ..j.clone()
            }),
        ),
        (
            "JOB_VALIDITY_WINDOW",
            signed(&Job {
                expires_at: NOW + 30 * 86400,
                ..j.clone()
            }),
        ),
        (
            "JOB_VALIDITY_WINDOW",
            signed(&Job {
                expires_at: j.issued_at - 1,
                ..j.clone()
            }),
        ),
        (
            "JOB_GCODE_HASH_MISMATCH",
            signed(&Job {
                gcode: GcodePayload {
                    bytes: GCODE[..GCODE.len() - 5].to_vec().into(),
                    encoding: GcodeEncoding::Identity,
                },
                ..j.clone()
            }),
        ),
        (
            "JOB_FIELD_INVALID",
            signed(&Job {
                job_id: "../../x".into(),
                ..j.clone()
            }),
        ),
        (
            "JOB_FIELD_INVALID",
            signed(&Job {
                prescription: JobPrescription {
                    dose_mg: f64::NAN,
                    ..j.prescription.clone()
                },
                ..j.clone()
            }),
        ),
    ];
    for (expected, bytes) in cases {
        assert_eq!(code(check(&bytes, &h)), expected);
    }
}

#[test]
fn rejects_replayed_id_and_stale_sequence() {
    let h = hub(1);
    let bytes = sign(&job(), &[&h.jobs[0]]).unwrap();
    let mut seen = MemoryHistory::default();
    seen.record("job-0007", 7);
    assert_eq!(
        code(authenticate(&bytes, &h.trusted, &ctx(), &seen)),
        "JOB_REPLAYED"
    );
    let mut later = MemoryHistory::default();
    later.record("job-0009", 9);
    assert_eq!(
        code(authenticate(&bytes, &h.trusted, &ctx(), &later)),
        "JOB_STALE_SEQUENCE"
    );
}

#[test]
fn job_signed_by_root_key_is_not_a_jobs_signature() {
    let h = hub(1);
    let bytes = sign(&job(), &[&h.root_key]).unwrap();
    assert_eq!(code(check(&bytes, &h)), "JOB_UNKNOWN_KEY");
}

#[test]
fn threshold_two_needs_both_jobs_keys() {
    let h = hub(2);
    assert_eq!(
        code(check(&sign(&job(), &[&h.jobs[0]]).unwrap(), &h)),
        "JOB_BELOW_THRESHOLD"
    );
    assert!(check(&sign(&job(), &[&h.jobs[0], &h.jobs[1]]).unwrap(), &h).is_ok());
}

#[test]
fn a_revoked_jobs_key_no_longer_counts() {
    let h = hub(1);
    let by_first = sign(&job(), &[&h.jobs[0]]).unwrap();
    let revoked: std::collections::BTreeSet<KeyId> =
        std::iter::once(h.jobs[0].public_key().key_id()).collect();
    let in_force = RoleKeysInForce {
        root: &h.trusted,
        revoked: &revoked,
    };
    let history = MemoryHistory::default();
    assert_eq!(
        code(authenticate_in_force(&by_first, in_force, &ctx(), &history)),
        "JOB_UNKNOWN_KEY"
    );
    // The other key of the role still signs jobs, and the pinned root alone still counts both.
    let by_second = sign(&job(), &[&h.jobs[1]]).unwrap();
    assert_eq!(
        code(authenticate_in_force(
            &by_second,
            in_force,
            &ctx(),
            &history
        )),
        "ACCEPT"
    );
    assert_eq!(code(check(&by_first, &h)), "ACCEPT");
}

#[test]
fn trust_root_signature_cannot_pass_as_a_job() {
    let h = hub(1);
    let payload = job().to_cbor().unwrap();
    let bytes = envelope::sign(ContentType::TrustRoot, &payload, &[&h.jobs[0]]).unwrap();
    assert_eq!(code(check(&bytes, &h)), "JOB_WRONG_CONTENT_TYPE");
}

#[test]
fn policy_binding_must_match_exactly() {
    let h = hub(1);
    let a = check(&sign(&job(), &[&h.jobs[0]]).unwrap(), &h).unwrap();
    assert!(
        a.check_policy_binding("fdm-hctz-printlet", 1, [7; 32])
            .is_ok()
    );
    for (id, v, sha) in [
        ("fdm-hctz-printlet", 2, [7; 32]),
        ("other", 1, [7; 32]),
        ("fdm-hctz-printlet", 1, [8; 32]),
    ] {
        assert_eq!(
            a.check_policy_binding(id, v, sha).unwrap_err().code(),
            "JOB_POLICY_MISMATCH"
        );
    }
}

//! The job attack corpus: one signed (or forged) job per attack under
//! `gateway/core/tests/data/job/{accept,reject}/`, each with a `.expected` reason code.
//!
//! This test (1) rebuilds every fixture from fixed keys and a fixed clock and checks that the
//! committed bytes are exactly what the generator makes — run it with `DOSEGATE_REGENERATE=1` to
//! rewrite them after a deliberate format change — and (2) runs `dosegate check-job` on each one,
//! checking the exit status and the reason code.
//!
//! Two attackers are modelled: one on the network who can edit bytes but not sign (forged,
//! tampered, replayed, truncated envelopes), and a compromised hub pipeline whose output the hub
//! signed (hash mismatch, wrong policy, zstd bomb, …; the G-code design-space attacks are in the
//! `gcode` corpus and are signed into jobs here too).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use coset::{CoseSign1, TaggedCborSerializable as _};
use dosegate_core::envelope::{self, ContentType, Signer, SoftwareKey};
use dosegate_core::job::{self, GcodeEncoding, GcodePayload, Job, JobPolicy, JobPrescription};
use dosegate_core::prescription::Formulation;
use dosegate_core::trust::{RoleSpec, Roles, TrustRoot};
use sha2::{Digest, Sha256};

/// The fixed clock of the corpus (2026-11-18T…Z).
const NOW: u64 = 1_795_000_000;
const GATEWAY: &str = "spoke-01";

fn key(tag: u8, n: u8) -> SoftwareKey {
    let mut secret = [0u8; 32];
    secret[0] = 0x44;
    secret[1] = tag;
    secret[31] = n;
    SoftwareKey::from_bytes(&secret).unwrap()
}

struct Hub {
    root: SoftwareKey,
    jobs: [SoftwareKey; 3],
    outsider: SoftwareKey,
    root_bytes: Vec<u8>,
}

fn hub() -> Hub {
    let root = key(1, 1);
    let jobs = [key(2, 1), key(2, 2), key(2, 3)];
    let mut keys = BTreeMap::new();
    for k in std::iter::once(&root).chain(&jobs) {
        let p = k.public_key();
        keys.insert(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()));
    }
    let mut job_ids: Vec<_> = jobs.iter().map(|k| k.public_key().key_id()).collect();
    job_ids.sort();
    let one = RoleSpec {
        keyids: vec![root.public_key().key_id()],
        threshold: 1,
    };
    let meta = TrustRoot {
        keys,
        roles: Roles {
            jobs: RoleSpec {
                keyids: job_ids,
                threshold: 2,
            },
            root: one.clone(),
            models: one.clone(),
            policies: one.clone(),
            revocation: one,
        },
        hub_id: "hub.corpus".into(),
        expires: NOW + 10 * 365 * 86400,
        version: 1,
    };
    let root_bytes =
        envelope::sign(ContentType::TrustRoot, &meta.to_cbor().unwrap(), &[&root]).unwrap();
    Hub {
        root,
        jobs,
        outsider: key(9, 9),
        root_bytes,
    }
}

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/job")
}

fn policy_path() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../policies/fdm-hctz-printlet.toml")
}

fn policy_bytes() -> Vec<u8> {
    std::fs::read(policy_path()).unwrap()
}

fn gcode_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../core/tests/data/gcode")
}

/// Real PrusaSlicer output for the example prescription (1 × 12.5 mg HCTZ printlet).
fn gcode() -> Vec<u8> {
    std::fs::read(gcode_dir().join("slicer/hctz-cylinder-7.2x2.6.gcode")).unwrap()
}

/// A design-space attack from the G-code corpus, signed by the hub as a compromised slicer's
/// output would be: the signature and hash are valid, only the design space can refuse it.
fn signed_gcode_attack(base: &Job, signers: &[&dyn Signer], name: &str) -> (Vec<u8>, String) {
    let path = gcode_dir().join("reject").join(format!("{name}.gcode"));
    let gcode = std::fs::read(&path).unwrap();
    let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
    // Format: comment, verdict, then `CODE LINE` per reason; the first reason is the one to see.
    let first = expected
        .lines()
        .filter(|l| !l.starts_with('#'))
        .nth(1)
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_owned();
    let job = Job {
        gcode: GcodePayload {
            bytes: gcode.clone().into(),
            encoding: GcodeEncoding::Identity,
        },
        prescription: JobPrescription {
            dose_mg: 1.2,
            patient_ref: "pt-corpus".into(),
            gcode_sha256: Sha256::digest(&gcode).into(),
            ..base.prescription.clone()
        },
        ..base.clone()
    };
    (job::sign(&job, signers).unwrap(), first)
}

fn base_job() -> Job {
    let gcode = gcode();
    let policy = policy_bytes();
    let table: toml::Table = toml::from_str(std::str::from_utf8(&policy).unwrap()).unwrap();
    Job {
        seq: 10,
        gcode: GcodePayload {
            bytes: gcode.clone().into(),
            encoding: GcodeEncoding::Identity,
        },
        job_id: "spoke-01-000010".into(),
        models: vec!["nir-dyrby2002".into()],
        policy: JobPolicy {
            id: table["id"].as_str().unwrap().into(),
            sha256: Sha256::digest(&policy).into(),
            version: u32::try_from(table["version"].as_integer().unwrap()).unwrap(),
        },
        issued_at: NOW - 600,
        expires_at: NOW + 86_400,
        gateway_id: GATEWAY.into(),
        formulation: Formulation {
            ink_lot: "HCTZ-PVA-2026-041".into(),
            api_fraction: 0.10,
            density_g_cm3: 1.25,
        },
        prescription: JobPrescription {
            units: 1,
            dose_mg: 12.5,
            product: "hctz-printlet".into(),
            patient_ref: "pt-7f3a9c".into(),
            gcode_sha256: Sha256::digest(&gcode).into(),
            tolerance_pct: 7.5,
        },
    }
}

/// One fixture: name, bytes, expected code ("ACCEPT" for the accept set), optional history.
struct Fixture {
    name: &'static str,
    bytes: Vec<u8>,
    expected: String,
    history: Option<&'static str>,
}

fn fx(name: &'static str, bytes: Vec<u8>, expected: &str) -> Fixture {
    Fixture {
        name,
        bytes,
        expected: expected.to_owned(),
        history: None,
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "the whole attack table reads best in one place"
)]
fn corpus() -> Vec<Fixture> {
    let h = hub();
    let two: [&dyn Signer; 2] = [&h.jobs[0], &h.jobs[1]];
    let sign2 = |j: &Job| job::sign(j, &two).unwrap();
    let base = base_job();
    let valid = sign2(&base);
    let sign1 = CoseSign1::from_tagged_slice(&valid).unwrap();

    let mut unsigned = sign1.clone();
    unsigned.signature.clear();
    unsigned.unprotected = coset::Header::default();

    let mut flipped = valid.clone();
    let at = flipped.windows(4).position(|w| w == b"G1 X").unwrap() + 3;
    flipped[at] = b'Y';

    let mut indefinite = valid.clone();
    // The outer array header 0x84 (array of 4) becomes 0x9f … 0xff (indefinite length).
    let pos = indefinite.iter().position(|&b| b == 0x84).unwrap();
    indefinite[pos] = 0x9f;
    indefinite.push(0xff);

    let mut trailing = valid.clone();
    trailing.extend_from_slice(&[0xf6]);

    let es384 = {
        let header = coset::HeaderBuilder::new()
            .algorithm(coset::iana::Algorithm::ES384)
            .key_id(h.jobs[0].public_key().key_id().as_bytes().to_vec())
            .content_type(ContentType::Job.media_type().to_owned())
            .build();
        coset::CoseSign1Builder::new()
            .protected(header)
            .payload(base.to_cbor().unwrap())
            .create_signature(&[], |tbs| h.jobs[0].sign(tbs).unwrap().to_vec())
            .build()
            .to_tagged_vec()
            .unwrap()
    };

    let mut high_s = sign1.clone();
    {
        use p256::elliptic_curve::ops::Neg as _;
        let sig = p256::ecdsa::Signature::from_slice(&high_s.signature).unwrap();
        let (r, s) = sig.split_scalars();
        high_s.signature = p256::ecdsa::Signature::from_scalars(r, s.as_ref().neg())
            .unwrap()
            .to_bytes()
            .to_vec();
    }

    let mut stripped = sign1.clone();
    stripped.unprotected = coset::Header::default();

    let extra_field = {
        let mut value: ciborium::Value =
            ciborium::from_reader(&base.to_cbor().unwrap()[..]).unwrap();
        if let ciborium::Value::Map(m) = &mut value {
            m.push((
                ciborium::Value::Text("zzzzzzzzzzzzzzzz".into()),
                ciborium::Value::Bool(true),
            ));
        }
        let mut payload = Vec::new();
        ciborium::into_writer(&value, &mut payload).unwrap();
        envelope::sign(ContentType::Job, &payload, &two).unwrap()
    };

    let bomb = {
        let big = vec![b';'; 7 * 1024 * 1024];
        Job {
            gcode: GcodePayload {
                bytes: ruzstd::encoding::compress_to_vec(
                    &big[..],
                    ruzstd::encoding::CompressionLevel::Fastest,
                )
                .into(),
                encoding: GcodeEncoding::Zstd,
            },
            prescription: JobPrescription {
                gcode_sha256: Sha256::digest(&big).into(),
                ..base.prescription.clone()
            },
            ..base.clone()
        }
    };

    let mut swapped_gcode = gcode();
    swapped_gcode.extend_from_slice(b"G1 X100 Y100 E50\n");

    let mut all = vec![
        fx(
            "accept/01_valid_threshold_two.cose",
            valid.clone(),
            "ACCEPT",
        ),
        fx(
            "accept/02_valid_all_three_keys.cose",
            job::sign(&base, &[&h.jobs[2], &h.jobs[1], &h.jobs[0]]).unwrap(),
            "ACCEPT",
        ),
        fx(
            "accept/03_valid_zstd.cose",
            sign2(&Job {
                gcode: GcodePayload {
                    bytes: ruzstd::encoding::compress_to_vec(
                        &gcode()[..],
                        ruzstd::encoding::CompressionLevel::Fastest,
                    )
                    .into(),
                    encoding: GcodeEncoding::Zstd,
                },
                ..base.clone()
            }),
            "ACCEPT",
        ),
        fx(
            "reject/01_unsigned.cose",
            unsigned.to_tagged_vec().unwrap(),
            "JOB_UNSIGNED",
        ),
        fx("reject/02_bad_signature.cose", flipped, "JOB_BAD_SIGNATURE"),
        fx(
            "reject/03_unknown_key.cose",
            job::sign(&base, &[&h.outsider]).unwrap(),
            "JOB_UNKNOWN_KEY",
        ),
        fx(
            "reject/04_below_threshold.cose",
            job::sign(&base, &[&h.jobs[0]]).unwrap(),
            "JOB_BELOW_THRESHOLD",
        ),
        fx(
            "reject/05_wrong_gateway.cose",
            sign2(&Job {
                gateway_id: "spoke-02".into(),
                ..base.clone()
            }),
            "JOB_WRONG_GATEWAY",
        ),
        fx(
            "reject/06_expired.cose",
            sign2(&Job {
                issued_at: NOW - 90_000,
                expires_at: NOW - 3_600,
                ..base.clone()
            }),
            "JOB_EXPIRED",
        ),
        fx(
            "reject/07_issued_in_future.cose",
            sign2(&Job {
                issued_at: NOW + 3_600,
                expires_at: NOW + 7_200,
                ..base.clone()
            }),
            "JOB_NOT_YET_VALID",
        ),
        Fixture {
            name: "reject/08_replayed.cose",
            bytes: valid.clone(),
            expected: "JOB_REPLAYED".into(),
            history: Some("10 spoke-01-000010\n"),
        },
        fx(
            "reject/09_hash_mismatch.cose",
            sign2(&Job {
                gcode: GcodePayload {
                    bytes: swapped_gcode.into(),
                    encoding: GcodeEncoding::Identity,
                },
                ..base.clone()
            }),
            "JOB_GCODE_HASH_MISMATCH",
        ),
        fx(
            "reject/10_truncated_envelope.cose",
            valid[..valid.len() * 2 / 3].to_vec(),
            "JOB_MALFORMED",
        ),
        fx(
            "reject/11_signed_by_root_not_jobs.cose",
            job::sign(&base, &[&h.root]).unwrap(),
            "JOB_UNKNOWN_KEY",
        ),
        fx(
            "reject/12_trust_root_type.cose",
            envelope::sign(ContentType::TrustRoot, &base.to_cbor().unwrap(), &two).unwrap(),
            "JOB_WRONG_CONTENT_TYPE",
        ),
        fx(
            "reject/13_countersignature_stripped.cose",
            stripped.to_tagged_vec().unwrap(),
            "JOB_BELOW_THRESHOLD",
        ),
        fx(
            "reject/14_policy_version_mismatch.cose",
            sign2(&Job {
                policy: JobPolicy {
                    version: base.policy.version + 1,
                    ..base.policy.clone()
                },
                ..base.clone()
            }),
            "JOB_POLICY_MISMATCH",
        ),
        Fixture {
            name: "reject/15_stale_sequence.cose",
            bytes: valid.clone(),
            expected: "JOB_STALE_SEQUENCE".into(),
            history: Some("11 spoke-01-000011\n"),
        },
        fx(
            "reject/16_zstd_bomb.cose",
            sign2(&bomb),
            "JOB_GCODE_TOO_LARGE",
        ),
        fx(
            "reject/17_validity_window_too_long.cose",
            sign2(&Job {
                expires_at: NOW + 60 * 86_400,
                ..base.clone()
            }),
            "JOB_VALIDITY_WINDOW",
        ),
        fx(
            "reject/18_indefinite_length_cbor.cose",
            indefinite,
            "JOB_MALFORMED",
        ),
        fx(
            "reject/19_wrong_algorithm.cose",
            es384,
            "JOB_WRONG_ALGORITHM",
        ),
        fx(
            "reject/20_nan_dose.cose",
            sign2(&Job {
                prescription: JobPrescription {
                    dose_mg: f64::NAN,
                    ..base.prescription.clone()
                },
                ..base.clone()
            }),
            "JOB_FIELD_INVALID",
        ),
        fx(
            "reject/21_high_s_malleated.cose",
            high_s.to_tagged_vec().unwrap(),
            "JOB_BAD_SIGNATURE",
        ),
        fx("reject/22_trailing_bytes.cose", trailing, "JOB_MALFORMED"),
        fx(
            "reject/23_unknown_payload_field.cose",
            extra_field,
            "JOB_PAYLOAD_MALFORMED",
        ),
        fx(
            "reject/24_policy_of_other_product.cose",
            sign2(&Job {
                policy: JobPolicy {
                    id: "sse-paste-printlet".into(),
                    ..base.policy.clone()
                },
                ..base.clone()
            }),
            "JOB_POLICY_MISMATCH",
        ),
    ];
    let signed_attacks: [(&'static str, &str); 10] = [
        (
            "reject/25_signed_firmware_flash.cose",
            "01_firmware_flash_m997",
        ),
        ("reject/26_signed_eeprom_write.cose", "02_eeprom_write_m500"),
        (
            "reject/27_signed_steps_per_mm_change.cose",
            "03_steps_per_mm_m92",
        ),
        (
            "reject/28_signed_cold_extrusion.cose",
            "04_cold_extrusion_allowed_m302",
        ),
        (
            "reject/29_signed_flow_rate_override.cose",
            "05_flow_override_m221",
        ),
        ("reject/30_signed_nozzle_too_hot.cose", "14_nozzle_too_hot"),
        ("reject/31_signed_dose_too_low.cose", "18_dose_too_low"),
        ("reject/32_signed_dose_too_high.cose", "19_dose_too_high"),
        (
            "reject/33_signed_move_outside_bed.cose",
            "20_move_outside_bed",
        ),
        (
            "reject/34_signed_truncated_gcode.cose",
            "22_truncated_heaters_on",
        ),
    ];
    for (name, gcode_case) in signed_attacks {
        let (bytes, expected) = signed_gcode_attack(&base, &two, gcode_case);
        all.push(Fixture {
            name,
            bytes,
            expected,
            history: None,
        });
    }
    all
}

#[test]
fn committed_fixtures_are_what_the_generator_makes() {
    let dir = data_dir();
    let regenerate = std::env::var_os("DOSEGATE_REGENERATE").is_some();
    if regenerate {
        std::fs::write(dir.join("trust-root.cbor"), hub().root_bytes).unwrap();
    }
    assert_eq!(
        std::fs::read(dir.join("trust-root.cbor")).unwrap(),
        hub().root_bytes,
        "trust-root.cbor"
    );
    for f in corpus() {
        let path = dir.join(f.name);
        if regenerate {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &f.bytes).unwrap();
            std::fs::write(path.with_extension("expected"), format!("{}\n", f.expected)).unwrap();
            if let Some(h) = f.history {
                std::fs::write(path.with_extension("history"), h).unwrap();
            }
        }
        assert_eq!(
            std::fs::read(&path).unwrap(),
            f.bytes,
            "{} differs from the generator",
            f.name
        );
    }
}

#[test]
fn check_job_gives_each_attack_its_reason_code() {
    let dir = data_dir();
    let mut seen = 0;
    for set in ["accept", "reject"] {
        let mut entries: Vec<_> = std::fs::read_dir(dir.join(set))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries
            .into_iter()
            .filter(|p| p.extension().is_some_and(|e| e == "cose"))
        {
            let expected = std::fs::read_to_string(path.with_extension("expected")).unwrap();
            let expected = expected.trim();
            let mut cmd = Command::new(env!("CARGO_BIN_EXE_dosegate"));
            cmd.arg("check-job")
                .arg(&path)
                .arg("--trust")
                .arg(dir.join("trust-root.cbor"))
                .arg("--policy")
                .arg(policy_path())
                .args(["--gateway-id", GATEWAY, "--now", &NOW.to_string(), "--json"]);
            let history = path.with_extension("history");
            if history.exists() {
                cmd.arg("--history").arg(&history);
            }
            let out = cmd.output().unwrap();
            let report: serde_json::Value =
                serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                    panic!(
                        "{}: no JSON ({e}): {}",
                        path.display(),
                        String::from_utf8_lossy(&out.stderr)
                    )
                });
            let name = path.file_name().unwrap().to_string_lossy().to_string();
            if expected == "ACCEPT" {
                assert_eq!(out.status.code(), Some(0), "{name}: {report}");
                assert_eq!(report["verdict"], "accept", "{name}");
            } else {
                assert_eq!(out.status.code(), Some(1), "{name}: {report}");
                assert_eq!(report["verdict"], "reject", "{name}");
                let codes: Vec<&str> = report["reasons"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|r| r["code"].as_str().unwrap())
                    .collect();
                assert!(
                    codes.contains(&expected),
                    "{name}: expected {expected}, got {codes:?}"
                );
            }
            seen += 1;
        }
    }
    assert!(seen >= 37, "only {seen} fixtures found");
}

#![allow(
    clippy::float_cmp,
    reason = "exact values are the point: decimal inputs, exact arithmetic"
)]

use sha2::Digest as _;

use super::*;
use crate::prescription::Prescription;

const FDM: &str = include_str!("../../../../policies/fdm-hctz-printlet.toml");
const SSE: &str = include_str!("../../../../policies/sse-levetiracetam-paste.toml");
const RX: &str = include_str!("../../tests/data/gcode/rx-corpus.toml");
const BASE: &str = include_str!("../../tests/data/gcode/accept/01_minimal_printlet.gcode");

fn fdm() -> Policy {
    Policy::from_toml(FDM).unwrap()
}

fn rx() -> Prescription {
    Prescription::from_toml(RX).unwrap()
}

#[test]
fn loads_the_shipped_policies() {
    let p = fdm();
    assert_eq!(
        (p.id(), p.version(), p.product()),
        ("fdm-hctz-printlet", 1, "hctz-printlet")
    );
    assert!((p.area_mm2() - 2.405_281_875_7).abs() < 1e-9);
    assert_eq!(
        p.allowed_params(b'G', 1),
        Some((1 << 23) | (1 << 24) | (1 << 25) | (1 << 4) | (1 << 5))
    );
    assert_eq!(p.allowed_params(b'M', 997), None);
    let s = Policy::from_toml(SSE).unwrap();
    assert_eq!(s.extrusion().kind, ExtruderKind::Syringe);
    assert!((s.area_mm2() - 165.129_963_6).abs() < 1e-6);
}

#[test]
fn refuses_inverted_ranges() {
    let text = FDM.replace("nozzle_c = [180.0, 200.0]", "nozzle_c = [200.0, 180.0]");
    assert_eq!(
        Policy::from_toml(&text),
        Err(PolicyError::InvertedRange {
            field: "temperature.nozzle_c",
            min: 200.0,
            max: 180.0
        })
    );
}

#[test]
fn refuses_non_physical_numbers() {
    let text = FDM.replace("diameter_mm = 1.75", "diameter_mm = nan");
    assert!(matches!(
        Policy::from_toml(&text),
        Err(PolicyError::OutOfRange {
            field: "extrusion.diameter_mm",
            ..
        })
    ));
    let text = FDM.replace("diameter_mm = 1.75", "diameter_mm = 14.5");
    assert!(matches!(
        Policy::from_toml(&text),
        Err(PolicyError::Extrusion { .. })
    ));
}

#[test]
fn carries_the_live_monitoring_limits_with_bounds_and_defaults() {
    let t = fdm().temperature().clone();
    assert_eq!(
        (t.tolerance_c, t.grace_s, t.heatup_timeout_s),
        (3.0, 10.0, 600.0)
    );
    let s = Policy::from_toml(SSE).unwrap().temperature().clone();
    assert_eq!(
        (s.tolerance_c, s.grace_s, s.heatup_timeout_s),
        (2.0, 15.0, 900.0)
    );
    // A policy written before the fields existed gets the documented defaults.
    let old = FDM
        .lines()
        .filter(|l| !l.starts_with("tolerance_c") && !l.starts_with("grace_s"))
        .filter(|l| !l.starts_with("heatup_timeout_s"))
        .collect::<Vec<_>>()
        .join("\n");
    let t = Policy::from_toml(&old).unwrap().temperature().clone();
    assert_eq!(
        (t.tolerance_c, t.grace_s, t.heatup_timeout_s),
        (
            DEFAULT_TOLERANCE_C,
            DEFAULT_GRACE_S,
            DEFAULT_HEATUP_TIMEOUT_S
        )
    );
    for (from, to, field) in [
        (
            "tolerance_c = 3.0",
            "tolerance_c = -1.0",
            "temperature.tolerance_c",
        ),
        (
            "tolerance_c = 3.0",
            "tolerance_c = 40.0",
            "temperature.tolerance_c",
        ),
        ("grace_s = 10.0", "grace_s = 3600.0", "temperature.grace_s"),
        ("grace_s = 10.0", "grace_s = nan", "temperature.grace_s"),
        (
            "heatup_timeout_s = 600.0",
            "heatup_timeout_s = 1.0",
            "temperature.heatup_timeout_s",
        ),
        (
            "heatup_timeout_s = 600.0",
            "heatup_timeout_s = 1e9",
            "temperature.heatup_timeout_s",
        ),
    ] {
        let text = FDM.replace(from, to);
        assert!(
            matches!(Policy::from_toml(&text), Err(PolicyError::OutOfRange { field: f, .. }) if f == field),
            "{to}"
        );
    }
}

#[test]
fn refuses_unknown_keys_and_missing_sections() {
    let text = format!("{FDM}\n[extra]\nx = 1\n");
    assert!(matches!(
        Policy::from_toml(&text),
        Err(PolicyError::Syntax { .. })
    ));
    let text = FDM.replace("[layers]", "[layerz]");
    assert!(matches!(
        Policy::from_toml(&text),
        Err(PolicyError::Syntax { .. })
    ));
}

#[test]
fn refuses_dangerous_commands_in_the_allowlist() {
    for (key, line) in [
        ("M997", "M997 = \"\""),
        ("M500", "M500 = \"\""),
        ("M92", "M92 = \"E\""),
        ("M302", "M302 = \"S\""),
        ("M221", "M221 = \"S\""),
        ("M118", "M118 = \"\""),
        ("G20", "G20 = \"\""),
        ("M812", "M812 = \"\""),
    ] {
        let text = FDM.replace("[commands]\n", &format!("[commands]\n{line}\n"));
        assert!(
            matches!(Policy::from_toml(&text), Err(PolicyError::NeverAllowed { key: ref k, .. }) if k == key),
            "{key}"
        );
    }
}

#[test]
fn refuses_malformed_allowlist_entries() {
    for line in ["G01 = \"X\"", "g1x = \"X\"", "X1 = \"\"", "G = \"\""] {
        let text = FDM.replace("[commands]\n", &format!("[commands]\n{line}\n"));
        assert!(
            matches!(
                Policy::from_toml(&text),
                Err(PolicyError::BadCommand { .. })
            ),
            "{line}"
        );
    }
    for letters in ["XX", "xy", "N", "X1"] {
        let text = FDM.replace("G0 = \"XYZEF\"", &format!("G0 = \"{letters}\""));
        assert!(
            matches!(
                Policy::from_toml(&text),
                Err(PolicyError::BadParameters { .. })
            ),
            "{letters}"
        );
    }
}

#[test]
fn refuses_oversized_policy_text() {
    let text = format!("{FDM}{}", "#".repeat(MAX_POLICY_BYTES));
    assert!(matches!(
        Policy::from_toml(&text),
        Err(PolicyError::TooLarge { .. })
    ));
}

#[test]
fn verified_program_carries_canonical_commands_positions_and_digest() {
    let v = verify_program(&fdm(), &rx(), BASE.as_bytes()).unwrap();
    assert_eq!(v.policy(), ("fdm-hctz-printlet", 1));
    let first_move = v
        .commands()
        .iter()
        .find(|c| c.text.starts_with("G1 X105 Y95"))
        .unwrap();
    assert_eq!(first_move.text, "G1 X105 Y95 E0.5");
    assert_eq!(first_move.after.x, 105.0);
    assert_eq!(first_move.after.e, 0.5);
    assert!(v.commands().iter().all(|c| !c.text.contains(';')));
    let digest: [u8; 32] = sha2::Sha256::digest(BASE.as_bytes()).into();
    assert_eq!(v.sha256(), &digest);
    assert!((v.analysis().dose_mg - 1.2026).abs() < 1e-3);
}

#[test]
fn hashed_program_proof_equals_the_one_pass_proof() {
    let hashed = HashedProgram::new(BASE.as_bytes().to_vec());
    let digest: [u8; 32] = sha2::Sha256::digest(BASE.as_bytes()).into();
    assert_eq!(hashed.sha256(), &digest);
    assert_eq!(hashed.bytes(), BASE.as_bytes());
    let one_pass = verify_program(&fdm(), &rx(), BASE.as_bytes()).unwrap();
    let prehashed = verify_hashed_program(&fdm(), &rx(), &hashed).unwrap();
    assert_eq!(prehashed, one_pass);
    // Every command's text is its own range of the shared buffer, in order, from both ends.
    let texts: Vec<&str> = one_pass.commands().iter().map(|c| c.text).collect();
    let mut backwards: Vec<&str> = one_pass.commands().iter().rev().map(|c| c.text).collect();
    backwards.reverse();
    assert_eq!(texts, backwards);
    assert_eq!(texts.len(), one_pass.commands().len());
    assert_eq!(
        one_pass.commands().last().map(|c| c.text),
        texts.last().copied()
    );
    assert_eq!(one_pass.commands().get(0).map(|c| c.text), Some("G21"));
    for (c, text) in one_pass.commands().iter().zip(&texts) {
        let again = crate::gcode::parse::parse_line(text.as_bytes(), 1)
            .unwrap()
            .unwrap();
        assert_eq!(again.canonical(), c.text);
    }
    // A rejected program is rejected the same way, with the hash the proof would carry.
    let bad = format!("{BASE}M104 S400\n");
    let hashed_bad = HashedProgram::new(bad.clone().into_bytes());
    assert_eq!(
        verify_hashed_program(&fdm(), &rx(), &hashed_bad).unwrap_err(),
        verify_program(&fdm(), &rx(), bad.as_bytes()).unwrap_err()
    );
}

#[test]
fn caller_hashed_check_equals_the_hashing_check() {
    let policy = fdm();
    let whole = check(&fdm(), &rx(), BASE.as_bytes());
    let mut c = CallerHashedChecker::new(&policy, &rx());
    for chunk in BASE.as_bytes().chunks(5) {
        c.feed(chunk);
    }
    let digest: [u8; 32] = sha2::Sha256::digest(BASE.as_bytes()).into();
    assert_eq!(c.finish(digest), whole);
}

#[test]
fn chunked_check_equals_whole_check() {
    let p = fdm();
    let rx = rx();
    let whole = check(&p, &rx, BASE.as_bytes());
    for size in [1, 2, 7, 64] {
        let mut c = ProgramChecker::new(&p, &rx);
        for chunk in BASE.as_bytes().chunks(size) {
            c.feed(chunk);
        }
        assert_eq!(c.finish().0, whole, "chunk size {size}");
    }
}

#[test]
fn prescription_for_another_policy_is_refused() {
    let mut rx = rx();
    rx.policy.version = 2;
    let report = check(&fdm(), &rx, BASE.as_bytes());
    assert_eq!(report.reasons[0].code, ReasonCode::RxPolicyMismatch);
}

#[test]
fn reasons_are_capped_and_counted() {
    let mut program = BASE.to_owned();
    for _ in 0..150 {
        program.push_str("m84\n");
    }
    let report = check(&fdm(), &rx(), program.as_bytes());
    assert_eq!(report.reasons.len(), MAX_REASONS);
    assert_eq!(report.reasons_omitted, 50);
    assert!(!report.accepted());
}

#[test]
fn program_larger_than_the_policy_allows_is_refused_without_reading_on() {
    let text = FDM.replace("max_bytes = 8_000_000", "max_bytes = 100");
    let p = Policy::from_toml(&text).unwrap();
    let report = check(&p, &rx(), BASE.as_bytes());
    assert_eq!(report.reasons[0].code, ReasonCode::GcodeTooLarge);
    assert_eq!(report.analysis.commands, 0);
}

#[test]
fn reason_display_names_code_line_value_and_limit() {
    let r = Reason::new(ReasonCode::DsNozzleTempHigh)
        .at(12)
        .value(Evidence::Num(230.0))
        .limit(Evidence::Range(180.0, 200.0));
    assert_eq!(
        r.to_string(),
        "DS_NOZZLE_TEMP_HIGH at line 12: nozzle temperature above range; found 230; allowed 180 … 200"
    );
    let json = serde_json::to_string(&r).unwrap();
    assert_eq!(
        json,
        r#"{"code":"DS_NOZZLE_TEMP_HIGH","line":12,"value":230.0,"limit":[180.0,200.0]}"#
    );
}

#[test]
fn every_code_serialises_as_its_documented_name() {
    for code in [
        ReasonCode::GcodeLowercase,
        ReasonCode::GcodeForbiddenCommand,
        ReasonCode::DsDoseOutOfTolerance,
        ReasonCode::DsOutsideBed,
        ReasonCode::GcodeG92NotE0,
    ] {
        assert_eq!(serde_json::to_value(code).unwrap(), code.as_str());
    }
}

//! Committed PrusaSlicer output (tests/data/gcode/slicer): accepted by its policy, and the
//! analyser's filament length equals the slicer's own `; filament used [mm] =` figure.

use std::fs;
use std::path::{Path, PathBuf};

use dosegate_core::policy::{self, Policy};
use dosegate_core::prescription::Prescription;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn load(policy: &str, rx: &str) -> (Policy, Prescription) {
    let p = Policy::from_toml(
        &fs::read_to_string(root().join("../../policies").join(format!("{policy}.toml"))).unwrap(),
    )
    .unwrap();
    let rx = Prescription::from_toml(&fs::read_to_string(root().join(rx)).unwrap()).unwrap();
    (p, rx)
}

/// The slicer's own filament figure (rounded to 0.01 mm by PrusaSlicer).
fn slicer_filament_mm(gcode: &[u8]) -> f64 {
    let text = std::str::from_utf8(gcode).unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("; filament used [mm] = "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn check(file: &str, policy: &str, rx: &str) {
    let (p, rx) = load(policy, rx);
    let gcode = fs::read(root().join("tests/data/gcode/slicer").join(file)).unwrap();
    let program = match policy::verify_program(&p, &rx, &gcode) {
        Ok(v) => v,
        Err(e) => panic!("{file}: {e}\n{:#?}", e.report.reasons),
    };
    let ours = program.analysis().filament_mm;
    let theirs = slicer_filament_mm(&gcode);
    // 0.1 %, or the slicer's own rounding to 0.01 mm when that is coarser.
    let tolerance = (theirs * 0.001).max(0.005 + 1e-9);
    assert!(
        (ours - theirs).abs() <= tolerance,
        "{file}: ours {ours} vs slicer {theirs}"
    );
    // Every command is re-emitted in canonical form and parses back to itself.
    assert!(program.commands().len() > 400);
    for c in program.commands() {
        let again = dosegate_core::gcode::parse::parse_line(c.text.as_bytes(), 1)
            .unwrap()
            .unwrap();
        assert_eq!(again.canonical(), c.text);
    }
    // The last position is where the end sequence parks the nozzle.
    let last = program.commands().last().unwrap();
    assert_eq!(last.text, "M84");
}

#[test]
fn fdm_hctz_printlets_from_prusaslicer_are_accepted_and_measured() {
    check(
        "hctz-cylinder-7.2x2.6.gcode",
        "fdm-hctz-printlet",
        "../../provisioning/examples/prescription-hctz.toml",
    );
}

#[test]
fn sse_paste_caplet_from_prusaslicer_is_accepted_and_measured() {
    check(
        "lev-caplet-16x8x3.6.gcode",
        "sse-levetiracetam-paste",
        "tests/data/gcode/rx-lev-paste.toml",
    );
}

#[test]
fn the_same_slicer_output_is_refused_for_another_dose() {
    let (p, mut rx) = load(
        "fdm-hctz-printlet",
        "../../provisioning/examples/prescription-hctz.toml",
    );
    rx.dose_mg = 10.0;
    let gcode =
        fs::read(root().join("tests/data/gcode/slicer/hctz-cylinder-7.2x2.6.gcode")).unwrap();
    let err = policy::verify_program(&p, &rx, &gcode).unwrap_err();
    let codes: Vec<&str> = err.report.reasons.iter().map(|r| r.code.as_str()).collect();
    assert_eq!(
        codes,
        ["DS_DOSE_OUT_OF_TOLERANCE", "DS_UNIT_DOSE_OUT_OF_TOLERANCE"]
    );
}

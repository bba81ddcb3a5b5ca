//! Real slicer output: printlet meshes from [`dosegate_core::printlet`] sliced by PrusaSlicer
//! with the validated profiles under `policies/slicer/`, for several shapes and settings. The
//! analyser's filament length must equal PrusaSlicer's own `; filament used [mm] =` within 0.1 %
//! (or its 0.01 mm rounding), and the matching policy must accept every program.
//!
//! Needs `prusa-slicer` (scripts/deps/20-slicer.apt). Without it the tests print a skip notice,
//! or fail when `DOSEGATE_REQUIRE_REAL` is set (as `make test` does).
#![cfg(feature = "real-slicer")]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use dosegate_core::policy::{self, Policy};
use dosegate_core::prescription::{Formulation, PolicyRef, Prescription};
use dosegate_core::printlet::Shape;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn slicer_available() -> bool {
    let found = Command::new("prusa-slicer")
        .arg("--help")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var_os("DOSEGATE_REQUIRE_REAL").is_none(),
            "prusa-slicer is not installed and DOSEGATE_REQUIRE_REAL is set"
        );
        eprintln!("SKIP: prusa-slicer not installed (scripts/deps/20-slicer.apt)");
    }
    found
}

struct Case {
    name: &'static str,
    policy: &'static str,
    shape: Shape,
    units: u32,
    density_g_cm3: f64,
    api_fraction: f64,
    settings: &'static [&'static str],
}

fn slice(case: &Case) -> Vec<u8> {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("real-slicer");
    fs::create_dir_all(&dir).unwrap();
    let stl = dir.join(format!("{}.stl", case.name));
    let out = dir.join(format!("{}.gcode", case.name));
    fs::write(&stl, case.shape.to_stl(128).unwrap()).unwrap();
    let ini = root()
        .join("policies/slicer")
        .join(format!("{}.ini", case.policy));
    let status = Command::new("prusa-slicer")
        .arg("--export-gcode")
        .arg("--load")
        .arg(&ini)
        .args(["--center", "100,100"])
        .args(["--duplicate", &case.units.to_string()])
        .args(case.settings)
        .arg("--output")
        .arg(&out)
        .arg(&stl)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "{}: {}",
        case.name,
        String::from_utf8_lossy(&status.stderr)
    );
    fs::read(&out).unwrap()
}

fn slicer_filament_mm(gcode: &[u8]) -> f64 {
    std::str::from_utf8(gcode)
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("; filament used [mm] = "))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

fn run(case: &Case) {
    let policy = Policy::from_toml(
        &fs::read_to_string(
            root()
                .join("policies")
                .join(format!("{}.toml", case.policy)),
        )
        .unwrap(),
    )
    .unwrap();
    let gcode = slice(case);
    let theirs = slicer_filament_mm(&gcode);
    // The prescription a hub would write for this printlet, from the slicer's own figure.
    let dose_mg =
        theirs * policy.area_mm2() * case.density_g_cm3 * case.api_fraction / f64::from(case.units);
    let rx = Prescription {
        patient_ref: "pt-slicer".into(),
        product: policy.product().into(),
        dose_mg,
        tolerance_pct: 5.0,
        units: case.units,
        formulation: Formulation {
            ink_lot: "LOT-1".into(),
            api_fraction: case.api_fraction,
            density_g_cm3: case.density_g_cm3,
        },
        policy: PolicyRef {
            id: policy.id().into(),
            version: policy.version(),
        },
        models: vec![],
    };
    rx.validate().unwrap();
    let program = match policy::verify_program(&policy, &rx, &gcode) {
        Ok(p) => p,
        Err(e) => panic!(
            "{}: valid slicer output rejected: {e}\n{:#?}",
            case.name, e.report.reasons
        ),
    };
    let ours = program.analysis().filament_mm;
    let tolerance = (theirs * 0.001).max(0.005 + 1e-9);
    assert!(
        (ours - theirs).abs() <= tolerance,
        "{}: analyser {ours} mm vs PrusaSlicer {theirs} mm",
        case.name
    );
    eprintln!(
        "{}: {} bytes, {} commands, filament {ours:.3} mm (slicer {theirs}), dose {:.3} mg",
        case.name,
        gcode.len(),
        program.commands().len(),
        program.analysis().dose_mg
    );
}

#[test]
fn prusaslicer_printlets_match_the_analyser_and_pass_their_policy() {
    if !slicer_available() {
        return;
    }
    let cases = [
        Case {
            name: "fdm-cylinder-x2",
            policy: "fdm-hctz-printlet",
            shape: Shape::Cylinder {
                diameter: 7.2,
                height: 2.6,
            },
            units: 2,
            density_g_cm3: 1.25,
            api_fraction: 0.10,
            settings: &[],
        },
        Case {
            name: "fdm-caplet-sparse",
            policy: "fdm-hctz-printlet",
            shape: Shape::Caplet {
                length: 14.0,
                width: 6.0,
                height: 3.0,
            },
            units: 1,
            density_g_cm3: 1.25,
            api_fraction: 0.10,
            settings: &["--fill-density", "20%", "--solid-infill-below-area", "0"],
        },
        Case {
            name: "fdm-cylinder-fine-solid",
            policy: "fdm-hctz-printlet",
            shape: Shape::Cylinder {
                diameter: 10.0,
                height: 4.0,
            },
            units: 1,
            density_g_cm3: 1.3,
            api_fraction: 0.15,
            settings: &[
                "--layer-height",
                "0.1",
                "--first-layer-height",
                "0.2",
                "--fill-density",
                "100%",
                "--fill-pattern",
                "rectilinear",
            ],
        },
        Case {
            name: "fdm-caplet-x3-gyroid",
            policy: "fdm-hctz-printlet",
            shape: Shape::Caplet {
                length: 12.0,
                width: 5.0,
                height: 2.5,
            },
            units: 3,
            density_g_cm3: 1.25,
            api_fraction: 0.05,
            settings: &["--fill-density", "35%", "--fill-pattern", "gyroid"],
        },
        Case {
            name: "sse-caplet",
            policy: "sse-levetiracetam-paste",
            shape: Shape::Caplet {
                length: 16.0,
                width: 8.0,
                height: 3.6,
            },
            units: 1,
            density_g_cm3: 1.15,
            api_fraction: 0.25,
            settings: &[],
        },
        Case {
            name: "sse-cylinder-x2",
            policy: "sse-levetiracetam-paste",
            shape: Shape::Cylinder {
                diameter: 12.0,
                height: 3.0,
            },
            units: 2,
            density_g_cm3: 1.15,
            api_fraction: 0.25,
            settings: &["--fill-density", "80%"],
        },
    ];
    for case in &cases {
        run(case);
    }
}

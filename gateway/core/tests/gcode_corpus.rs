//! The G-code attack corpus: every fixture under `tests/data/gcode/{accept,reject}` is checked
//! against the FDM policy and the corpus prescription, and its reasons must be exactly the ones
//! in its `.expected` file (verdict, then `CODE LINE` per reason, `-` for whole-program reasons).

use std::fs;
use std::path::{Path, PathBuf};

use dosegate_core::policy::{self, Policy};
use dosegate_core::prescription::Prescription;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).to_path_buf()
}

fn policy(name: &str) -> Policy {
    let path = root().join("../../policies").join(format!("{name}.toml"));
    Policy::from_toml(&fs::read_to_string(path).unwrap()).unwrap()
}

fn rx(path: &Path) -> Prescription {
    Prescription::from_toml(&fs::read_to_string(path).unwrap()).unwrap()
}

fn fixtures(dir: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = fs::read_dir(root().join("tests/data/gcode").join(dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "gcode"))
        .collect();
    v.sort();
    v
}

fn expected(path: &Path) -> (String, Vec<String>) {
    let text = fs::read_to_string(path.with_extension("expected")).unwrap();
    let mut lines = text.lines().filter(|l| !l.starts_with('#'));
    let verdict = lines.next().unwrap().to_owned();
    (verdict, lines.map(str::to_owned).collect())
}

fn check_dir(dir: &str, want_verdict: &str) -> usize {
    let p = policy("fdm-hctz-printlet");
    let rx = rx(&root().join("tests/data/gcode/rx-corpus.toml"));
    let files = fixtures(dir);
    for f in &files {
        let gcode = fs::read(f).unwrap();
        let report = policy::check(&p, &rx, &gcode);
        let got: Vec<String> = report
            .reasons
            .iter()
            .map(|r| {
                format!(
                    "{} {}",
                    r.code,
                    r.line.map_or("-".into(), |l| l.to_string())
                )
            })
            .collect();
        let verdict = if report.accepted() {
            "accept"
        } else {
            "reject"
        };
        let (want_v, want) = expected(f);
        assert_eq!(verdict, want_v, "{}", f.display());
        assert_eq!(verdict, want_verdict, "{} is in {dir}/", f.display());
        assert_eq!(got, want, "{}", f.display());
        // The proof type agrees with the report.
        assert_eq!(
            policy::verify_program(&p, &rx, &gcode).is_ok(),
            report.accepted(),
            "{}",
            f.display()
        );
    }
    files.len()
}

#[test]
fn every_attack_fixture_is_rejected_with_its_expected_reasons() {
    assert!(check_dir("reject", "reject") >= 60);
}

#[test]
fn every_accept_fixture_is_accepted() {
    assert!(check_dir("accept", "accept") >= 3);
}

#[test]
fn attack_fixtures_differ_from_the_base_program() {
    // Guards the corpus itself: a fixture identical to the accepted base would prove nothing.
    let base = fs::read(root().join("tests/data/gcode/accept/01_minimal_printlet.gcode")).unwrap();
    for f in fixtures("reject") {
        assert_ne!(fs::read(&f).unwrap(), base, "{}", f.display());
    }
}

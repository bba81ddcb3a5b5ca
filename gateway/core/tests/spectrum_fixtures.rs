//! JCAMP-DX fixtures, one per behaviour: `tests/data/spectrum/accept/*.jdx` must parse to the
//! ordinates in the `.expected` beside them; every `reject/*.jdx` must be refused (never a panic,
//! never a partial spectrum).

use std::path::PathBuf;

use dosegate_core::spectrum::jcamp;

fn dir(kind: &str) -> Vec<PathBuf> {
    let d = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/spectrum")
        .join(kind);
    let mut v: Vec<PathBuf> = std::fs::read_dir(d)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "jdx"))
        .collect();
    v.sort();
    v
}

#[test]
fn accepted_fixtures_decode_to_their_expected_ordinates() {
    let files = dir("accept");
    assert!(files.len() >= 2);
    for f in files {
        let s = jcamp::parse(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{}: {e}", f.display()));
        let expected: Vec<f64> = std::fs::read_to_string(f.with_extension("expected"))
            .unwrap()
            .split_whitespace()
            .map(|v| v.parse().unwrap())
            .collect();
        assert_eq!(s.len(), expected.len(), "{}", f.display());
        for (got, want) in s.values().iter().zip(&expected) {
            assert!(
                (got - want).abs() < 1e-12,
                "{}: {got} vs {want}",
                f.display()
            );
        }
    }
}

#[test]
fn rejected_fixtures_are_refused() {
    let files = dir("reject");
    assert!(files.len() >= 7);
    for f in files {
        let text = std::fs::read_to_string(&f).unwrap();
        assert!(jcamp::parse(&text).is_err(), "{} was accepted", f.display());
    }
}

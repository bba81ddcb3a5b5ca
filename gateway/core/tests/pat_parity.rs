//! Parity with scikit-learn: the committed models, run by the gateway's inference code, reproduce
//! the reference vectors written by `models/tools/reference_vectors.py` (sklearn `PLSRegression`,
//! scale=False, on the same preprocessing and latent variables) to 1e-9 relative — prediction,
//! Hotelling T² and Q — for calibration spectra and for spectra outside the domain.
//! Provenance and regeneration: `gateway/core/tests/data/pat/README.md`.

use std::path::PathBuf;

use dosegate_core::inference::ValidatedModel;
use serde_json::Value;

const TOLERANCE: f64 = 1e-9;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn numbers(v: &Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn check(model_id: &str) {
    let bytes = std::fs::read(root().join("models").join(format!("{model_id}.cbor"))).unwrap();
    let model = ValidatedModel::from_bytes(&bytes).unwrap();
    let path = root().join(format!("gateway/core/tests/data/pat/{model_id}.json"));
    let vectors: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    assert_eq!(
        vectors["latent_variables"].as_u64().unwrap(),
        model.file().pls.score_var.len() as u64,
        "{model_id}: the vectors were made with another LV count"
    );
    assert_eq!(
        vectors["calibration_sha256"].as_str().unwrap(),
        model.file().training.data,
        "{model_id}: the vectors were made from other calibration data"
    );
    let spectra = vectors["spectra"].as_array().unwrap();
    let (pred, t2, q) = (
        numbers(&vectors["prediction"]),
        numbers(&vectors["t2"]),
        numbers(&vectors["q"]),
    );
    assert!(spectra.len() >= 8);
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    let mut outside = Vec::new();
    for (i, s) in spectra.iter().enumerate() {
        let p = model.predict_values(&numbers(s), &mut out, &mut scratch);
        for (what, ours, theirs) in [
            ("prediction", p.value(), pred[i]),
            ("t2", p.t2(), t2[i]),
            ("q", p.q(), q[i]),
        ] {
            let rel = (ours - theirs).abs() / theirs.abs();
            assert!(
                rel <= TOLERANCE,
                "{model_id} spectrum {i} {what}: ours {ours:e}, sklearn {theirs:e}, relative {rel:e}"
            );
        }
        if !p.in_domain() {
            outside.push(vectors["rows"][i].to_string());
        }
    }
    // The spectrum with a foreign band in the model's window must lie outside the domain.
    assert!(
        outside.iter().any(|r| r.contains("foreign-band")),
        "{model_id}: outside the domain: {outside:?}"
    );
}

#[test]
fn nir_dyrby2002_matches_scikit_learn() {
    check("nir-dyrby2002");
}

#[test]
fn raman_dyrby2002_matches_scikit_learn() {
    check("raman-dyrby2002");
}

#[test]
fn nir_idrc2002_inst1_matches_scikit_learn() {
    check("nir-idrc2002-inst1");
}

//! The committed PAT models are reproducible: training each specification in `models/specs/` on
//! the shared calibration data gives byte-identical model files (same SHA-256 identity). Needs
//! `../shared/data/pat`; without it the test says so and returns (data absence is not a missing
//! component).

use std::path::PathBuf;

use dosegate_provisioning::model::{TrainRequest, train_model};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn retraining_every_spec_reproduces_the_committed_model_bytes() {
    let data = root().join("../shared/data/pat");
    if !data.is_dir() {
        eprintln!("skipped: no calibration data at ../shared/data/pat");
        return;
    }
    let out = tempfile::tempdir().unwrap();
    let mut specs: Vec<PathBuf> = std::fs::read_dir(root().join("models/specs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    specs.sort();
    assert_eq!(specs.len(), 3);
    for spec in specs {
        let summary = train_model(&TrainRequest {
            spec: spec.clone(),
            data_dir: data.clone(),
            out_dir: out.path().to_owned(),
        })
        .unwrap();
        let fresh = std::fs::read(out.path().join(format!("{}.cbor", summary.id))).unwrap();
        let committed = std::fs::read(root().join(format!("models/{}.cbor", summary.id))).unwrap();
        assert!(
            fresh == committed,
            "{}: retrained model differs from the committed one (run scripts/train-models.sh)",
            summary.id
        );
        let card =
            std::fs::read_to_string(root().join(format!("models/{}.md", summary.id))).unwrap();
        assert!(
            card.contains(&summary.sha256),
            "{}: model card names another model",
            summary.id
        );
    }
}

#[test]
fn accuracy_targets_hold_for_the_dyrby_models() {
    // Leave-batch-out RMSECV recorded in the committed models (targets: NIR ≤ 0.33, Raman ≤ 0.65).
    for (id, target) in [("nir-dyrby2002", 0.33), ("raman-dyrby2002", 0.65)] {
        let bytes = std::fs::read(root().join(format!("models/{id}.cbor"))).unwrap();
        let model = dosegate_core::inference::ValidatedModel::from_bytes(&bytes).unwrap();
        let lv = u32::try_from(model.file().pls.score_var.len()).unwrap();
        let cv = model
            .file()
            .training
            .cv
            .iter()
            .find(|c| c.lv == lv)
            .unwrap();
        assert_eq!(model.file().training.group_by.as_deref(), Some("batch"));
        assert!(cv.rmsecv <= target, "{id}: RMSECV {} > {target}", cv.rmsecv);
    }
}

//! `dosegate predict` as an operator runs it: JCAMP-DX files and CSV files against the committed
//! models, JSON output, exit codes, and refusal of a spectrum on another axis.

use std::path::PathBuf;
use std::process::Command;

use dosegate_core::inference::ValidatedModel;
use dosegate_core::spectrum::{Axis, Spectrum, jcamp};
use serde_json::Value;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model(id: &str) -> (PathBuf, ValidatedModel) {
    let path = root().join(format!("models/{id}.cbor"));
    let m = ValidatedModel::from_bytes(&std::fs::read(&path).unwrap()).unwrap();
    (path, m)
}

fn predict(args: &[&str]) -> (i32, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_dosegate"))
        .arg("predict")
        .args(args)
        .output()
        .unwrap();
    let json = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.code().unwrap(), json)
}

#[test]
fn predicts_jcamp_files_and_refuses_a_shifted_axis() {
    let (path, m) = model("raman-dyrby2002");
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (i, case) in m.file().reference_cases.iter().enumerate() {
        let s = Spectrum::new(m.axis().clone(), case.spectrum.clone()).unwrap();
        let f = dir.path().join(format!("unit-{i}.jdx"));
        std::fs::write(&f, jcamp::write_xypoints("unit", &s)).unwrap();
        files.push(f);
    }
    let mut args = vec!["--model", path.to_str().unwrap(), "--json"];
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let (code, json) = predict(&args);
    assert_eq!(code, 0, "{json}");
    for (row, case) in json["spectra"]
        .as_array()
        .unwrap()
        .iter()
        .zip(&m.file().reference_cases)
    {
        let p = row["prediction"].as_f64().unwrap();
        assert!((p - case.prediction).abs() <= 1e-9 * case.prediction.abs());
        assert!(row["t2"].as_f64().is_some() && row["q"].as_f64().is_some());
        assert!(row["t2_limit99"].as_f64().is_some() && row["q_limit99"].as_f64().is_some());
        assert_eq!(row["in_domain"], Value::Bool(true));
    }

    let shifted = Axis::new(
        m.axis().unit(),
        m.axis().values().iter().map(|x| x - 1.0).collect(),
    )
    .unwrap();
    let s = Spectrum::new(shifted, m.file().reference_cases[0].spectrum.clone()).unwrap();
    let f = dir.path().join("shifted.jdx");
    std::fs::write(&f, jcamp::write_xypoints("shifted", &s)).unwrap();
    let (code, json) = predict(&[
        "--model",
        path.to_str().unwrap(),
        "--json",
        f.to_str().unwrap(),
    ]);
    assert_eq!(code, 1);
    assert_eq!(json["spectra"][0]["error"]["code"], "axis-mismatch");
    assert_eq!(json["spectra"][0]["in_domain"], Value::Bool(false));
}

#[test]
fn refuses_a_missing_model_with_exit_code_2() {
    let (code, _) = predict(&["--model", "/nonexistent/model.cbor", "x.jdx"]);
    assert_eq!(code, 2);
}

#[test]
fn scores_a_csv_with_reference_values() {
    let data = root().join("../shared/data/pat");
    if !data.is_dir() {
        eprintln!("skipped: no calibration data at ../shared/data/pat");
        return;
    }
    for (id, file, max_rmsep) in [
        ("nir-dyrby2002", "dyrby2002_nir_cal.csv", 0.33),
        ("raman-dyrby2002", "dyrby2002_raman_cal.csv.gz", 0.65),
        (
            "nir-idrc2002-inst1",
            "idrc2002_shootout_inst1_cal.csv.gz",
            4.0,
        ),
    ] {
        let (path, m) = model(id);
        let csv = data.join(file);
        let (_, json) = predict(&[
            "--model",
            path.to_str().unwrap(),
            "--csv",
            csv.to_str().unwrap(),
            "--json",
        ]);
        let summary = &json["summary"];
        let n = summary["n"].as_u64().unwrap();
        assert_eq!(n, u64::from(m.file().training.n));
        // On its own calibration data the error is the RMSEC the model recorded.
        let rmsep = summary["rmsep"].as_f64().unwrap();
        assert!(
            (rmsep - m.file().training.rmsec).abs() < 1e-9,
            "{id}: {rmsep}"
        );
        assert!(rmsep < max_rmsep, "{id}: {rmsep}");
        assert!(summary["r"].as_f64().unwrap() > 0.8);
        assert!(json["spectra"][0]["reference"].as_f64().is_some());
    }
}

#[test]
fn instrument_two_spectra_fall_outside_the_instrument_one_model() {
    let data = root().join("../shared/data/pat");
    if !data.is_dir() {
        eprintln!("skipped: no calibration data at ../shared/data/pat");
        return;
    }
    let (path, _) = model("nir-idrc2002-inst1");
    let csv = data.join("idrc2002_shootout_inst2_cal.csv.gz");
    let (code, json) = predict(&[
        "--model",
        path.to_str().unwrap(),
        "--csv",
        csv.to_str().unwrap(),
        "--json",
    ]);
    assert_eq!(code, 1);
    let rows = json["spectra"].as_array().unwrap();
    let outside = rows
        .iter()
        .filter(|r| r["in_domain"] == Value::Bool(false))
        .count();
    assert!(
        outside * 10 >= rows.len() * 9,
        "{outside} of {}",
        rows.len()
    );
}

use super::*;
use crate::inference::preprocess::StepSpec;
use crate::inference::train::{CalibrationSet, TrainingSpec, train};

/// A synthetic calibration: two Gaussian bands on a sloped baseline; the first band's height is
/// the content. Deterministic: the noise comes from a fixed linear congruential sequence.
pub(crate) fn synthetic() -> (Axis, Vec<Vec<f64>>, Vec<f64>, Vec<String>) {
    let axis_values: Vec<f64> = (0..120).map(|i| 1000.0 + 2.0 * f64::from(i)).collect();
    let axis = Axis::new(AxisUnit::Nanometre, axis_values.clone()).unwrap();
    let mut rows = Vec::new();
    let mut y = Vec::new();
    let mut groups = Vec::new();
    let mut state: u64 = 0x2545_f491_4f6c_dd1d;
    let mut noise = move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 11) as f64 / (1u64 << 53) as f64) - 0.5
    };
    for i in 0..40 {
        let fi = f64::from(i);
        let content = 5.0 + (fi * 0.37).sin() * 1.5;
        let other = 2.0 + (fi * 0.91).cos();
        let gain = 1.0 + 0.05 * (fi * 1.3).sin();
        let row = axis_values
            .iter()
            .map(|x| {
                let band1 = content * (-((x - 1080.0) / 12.0).powi(2)).exp();
                let band2 = other * (-((x - 1160.0) / 20.0).powi(2)).exp();
                gain * (band1 + band2 + 0.001 * (x - 1000.0)) + 0.004 * noise()
            })
            .collect();
        rows.push(row);
        y.push(content);
        groups.push(format!("b{}", i / 5));
    }
    (axis, rows, y, groups)
}

pub(crate) fn synthetic_model() -> TrainedModelBytes {
    let (axis, rows, y, groups) = synthetic();
    let spec = TrainingSpec {
        id: "synthetic".into(),
        version: 1,
        quantity: Quantity::ContentPctWw,
        preprocessing: vec![
            StepSpec::Snv,
            StepSpec::Savgol {
                window: 7,
                order: 2,
                deriv: 1,
            },
            StepSpec::Range {
                from: 1010.0,
                to: 1220.0,
            },
            StepSpec::Centre,
        ],
        group_by: Some("batch".into()),
        folds: 5,
        max_lv: 6,
        lv: None,
        axis_tolerance_steps: 0.05,
    };
    let set = CalibrationSet {
        axis: &axis,
        rows: rows.iter().map(Vec::as_slice).collect(),
        y,
        groups: Some(groups),
        reference: "content".into(),
        source: "synthetic".into(),
        data_sha256: "00".into(),
        trainer: "test".into(),
    };
    let t = train(&spec, &set).unwrap();
    TrainedModelBytes {
        bytes: t.bytes,
        axis,
        rows,
    }
}

pub(crate) struct TrainedModelBytes {
    pub bytes: Vec<u8>,
    pub axis: Axis,
    pub rows: Vec<Vec<f64>>,
}

#[test]
fn trained_model_round_trips_and_predicts_its_calibration() {
    let t = synthetic_model();
    let model = ValidatedModel::from_bytes(&t.bytes).unwrap();
    assert_eq!(model.id().id, "synthetic");
    assert_eq!(model.id().sha256.len(), 64);
    let value: ciborium::Value = ciborium::from_reader(t.bytes.as_slice()).unwrap();
    assert!(crate::cbor::is_deterministic_value(&value));
    let cv = &model.file().training.cv;
    assert!(cv.iter().any(|c| c.rmsecv < 0.25), "{cv:?}");
    let s = Spectrum::new(t.axis.clone(), t.rows[3].clone()).unwrap();
    let p = model.predict(&s).unwrap();
    assert!(p.in_domain());
    assert!((p.value() - (5.0 + (3.0f64 * 0.37).sin() * 1.5)).abs() < 0.3);
}

#[test]
fn a_spectrum_with_a_foreign_band_is_outside_the_domain() {
    let t = synthetic_model();
    let model = ValidatedModel::from_bytes(&t.bytes).unwrap();
    let mut v = t.rows[3].clone();
    for (k, x) in v.iter_mut().enumerate() {
        *x += 3.0 * (-((k as f64 - 20.0) / 3.0).powi(2)).exp();
    }
    let p = model
        .predict(&Spectrum::new(t.axis.clone(), v).unwrap())
        .unwrap();
    assert_eq!(p.domain(), Domain::Outside);
}

#[test]
fn a_shifted_axis_is_refused_not_interpolated() {
    let t = synthetic_model();
    let model = ValidatedModel::from_bytes(&t.bytes).unwrap();
    let shifted: Vec<f64> = t.axis.values().iter().map(|x| x + 2.0).collect();
    let s = Spectrum::new(
        Axis::new(AxisUnit::Nanometre, shifted).unwrap(),
        t.rows[0].clone(),
    )
    .unwrap();
    assert!(matches!(
        model.predict(&s),
        Err(AxisMismatch::Value { index: 0, .. })
    ));
}

#[test]
fn tampered_coefficients_fail_the_reference_cases_at_load() {
    let t = synthetic_model();
    let model = ValidatedModel::from_bytes(&t.bytes).unwrap();
    let mut file = model.file().clone();
    if let Some(c) = file.pls.coef.get_mut(10) {
        *c += 0.5;
    }
    let bytes = ValidatedModel::encode(&file).unwrap();
    assert!(matches!(
        ValidatedModel::from_bytes(&bytes),
        Err(ModelError::ReferenceCase {
            what: "prediction",
            ..
        })
    ));
}

#[test]
fn refuses_other_formats_and_truncated_files() {
    let t = synthetic_model();
    let model = ValidatedModel::from_bytes(&t.bytes).unwrap();
    let mut file = model.file().clone();
    file.format = 2;
    let bytes = ValidatedModel::encode(&file).unwrap();
    assert_eq!(
        ValidatedModel::from_bytes(&bytes).unwrap_err(),
        ModelError::Format { got: 2 }
    );
    assert!(matches!(
        ValidatedModel::from_bytes(&t.bytes[..t.bytes.len() - 3]),
        Err(ModelError::Cbor(_))
    ));
}

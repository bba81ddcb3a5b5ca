use super::*;
use crate::inference::ValidatedModel;
use crate::inference::model::tests::synthetic_model;
use crate::spectrum::{Axis, AxisUnit, Spectrum};

const RX: &str = r#"
patient_ref = "pt-7f3a9c"
product = "synthetic-printlet"
dose_mg = 10.0
tolerance_pct = 10.0
units = 3

[formulation]
ink_lot = "LOT-1"
api_fraction = 0.05
density_g_cm3 = 1.25

[policy]
id = "fdm-synthetic"
version = 1
"#;

struct Fixture {
    model: ValidatedModel,
    axis: Axis,
    rows: Vec<Vec<f64>>,
    rx: Prescription,
}

fn fixture() -> Fixture {
    let t = synthetic_model();
    Fixture {
        model: ValidatedModel::from_bytes(&t.bytes).unwrap(),
        axis: t.axis,
        rows: t.rows,
        rx: Prescription::from_toml(RX).unwrap(),
    }
}

impl Fixture {
    fn predict(&self, values: Vec<f64>) -> Result<Prediction, AxisMismatch> {
        self.model
            .predict(&Spectrum::new(self.axis.clone(), values).unwrap())
    }
    /// Calibration row 0 (content 5.0 % w/w, inside the domain) plus a foreign band of `height`.
    fn with_band(&self, height: f64) -> Vec<f64> {
        let mut v = self.rows[0].clone();
        for (k, x) in v.iter_mut().enumerate() {
            *x += height * (-((k as f64 - 20.0) / 3.0).powi(2)).exp();
        }
        v
    }
}

#[test]
fn in_spec_in_domain_unit_is_released_with_nominal_mass_basis() {
    let f = fixture();
    let p = f.predict(f.rows[0].clone());
    let d = decide_unit(&f.rx, &p, None);
    let Decision::Released { dose } = d else {
        panic!("{d:?}")
    };
    assert_eq!(dose.mass_source, MassSource::Nominal);
    assert_eq!(dose.mass_mg, Some(200.0));
    assert!((dose.dose_mg - dose.predicted * 2.0).abs() < 1e-12);
}

#[test]
fn weighed_mass_is_used_for_the_dose_and_checked_against_nominal() {
    let f = fixture();
    let p = f.predict(f.rows[0].clone());
    let Decision::Released { dose } = decide_unit(&f.rx, &p, Some(195.0)) else {
        panic!()
    };
    assert_eq!(dose.mass_source, MassSource::Balance);
    assert!((dose.dose_mg - dose.predicted / 100.0 * 195.0).abs() < 1e-12);
    // 240 mg: dose 12 mg → out of the 9–11 mg window before the mass check.
    assert!(matches!(
        decide_unit(&f.rx, &p, Some(240.0)),
        Decision::Rejected {
            reason: RejectReason::DoseOutOfSpecification { .. }
        }
    ));
    assert!(matches!(
        decide_unit(&f.rx, &p, Some(f64::NAN)),
        Decision::Quarantined {
            reason: QuarantineReason::ImplausibleMass { .. }
        }
    ));
}

#[test]
fn out_of_spec_content_inside_the_domain_is_rejected_with_evidence() {
    let f = fixture();
    // Row 3 has 6.34 % w/w → 12.7 mg at nominal mass.
    let p = f.predict(f.rows[3].clone());
    match decide_unit(&f.rx, &p, None) {
        Decision::Rejected {
            reason:
                RejectReason::DoseOutOfSpecification {
                    dose,
                    low_mg,
                    high_mg,
                },
        } => {
            assert!(dose.dose_mg > high_mg);
            assert!((low_mg - 9.0).abs() < 1e-12 && (high_mg - 11.0).abs() < 1e-12);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn out_of_domain_spectrum_is_quarantined_even_if_its_prediction_is_in_spec() {
    let f = fixture();
    let p = f.predict(f.with_band(3.0)).unwrap();
    assert_eq!(p.domain(), Domain::Outside);
    assert!(matches!(
        decide_unit(&f.rx, &Ok(p), None),
        Decision::Quarantined {
            reason: QuarantineReason::OutOfDomain { .. }
        }
    ));
}

#[test]
fn between_95_and_99_percent_limits_releases_with_a_warning() {
    let f = fixture();
    // Grow a small foreign band until Q passes its 95 % limit but not its 99 % one.
    let warned = (0..600)
        .map(|i| 1e-6 * 1.02f64.powi(i))
        .map(|h| f.predict(f.with_band(h)).unwrap())
        .find(|p| p.domain() == Domain::Warning)
        .expect("some band height lands between the limits");
    match decide_unit(&f.rx, &Ok(warned), None) {
        Decision::ReleasedWithWarning { warnings, .. } => assert!(!warnings.is_empty()),
        other => panic!("{other:?}"),
    }
}

#[test]
fn axis_mismatch_is_quarantined() {
    let f = fixture();
    let shifted = Axis::new(
        AxisUnit::Nanometre,
        f.axis.values().iter().map(|x| x + 1.0).collect(),
    )
    .unwrap();
    let p = f
        .model
        .predict(&Spectrum::new(shifted, f.rows[0].clone()).unwrap());
    assert!(matches!(
        decide_unit(&f.rx, &p, None),
        Decision::Quarantined {
            reason: QuarantineReason::AxisMismatch { .. }
        }
    ));
}

#[test]
fn every_unit_of_a_job_is_accounted_for_exactly_once() {
    let f = fixture();
    let ok = f.predict(f.rows[0].clone());
    let measurements = vec![
        UnitMeasurement {
            unit: 1,
            spectrum: ok.clone(),
            mass_mg: None,
        },
        UnitMeasurement {
            unit: 3,
            spectrum: ok.clone(),
            mass_mg: None,
        },
        UnitMeasurement {
            unit: 3,
            spectrum: ok.clone(),
            mass_mg: None,
        },
    ];
    let account = decide_job(&f.rx, &measurements).unwrap();
    assert_eq!(account.units().len(), 3);
    assert_eq!(account.released(), 1);
    assert_eq!(account.quarantined(), 2);
    assert_eq!(account.outcome(), JobOutcome::Quarantined);
    assert_eq!(
        account.units()[1].decision,
        Decision::Quarantined {
            reason: QuarantineReason::NotMeasured
        }
    );
    assert_eq!(
        account.units()[2].decision,
        Decision::Quarantined {
            reason: QuarantineReason::DuplicateMeasurement { count: 2 }
        }
    );
    let all = vec![
        UnitMeasurement {
            unit: 1,
            spectrum: ok.clone(),
            mass_mg: None,
        },
        UnitMeasurement {
            unit: 2,
            spectrum: ok.clone(),
            mass_mg: None,
        },
        UnitMeasurement {
            unit: 3,
            spectrum: f.predict(f.rows[3].clone()),
            mass_mg: None,
        },
    ];
    let account = decide_job(&f.rx, &all).unwrap();
    assert_eq!((account.released(), account.rejected()), (2, 1));
    assert_eq!(account.outcome(), JobOutcome::Rejected);
}

#[test]
fn measurement_for_a_unit_the_job_lacks_is_refused() {
    let f = fixture();
    let m = vec![UnitMeasurement {
        unit: 4,
        spectrum: f.predict(f.rows[0].clone()),
        mass_mg: None,
    }];
    assert_eq!(
        decide_job(&f.rx, &m),
        Err(ReleaseError::UnknownUnit { unit: 4, units: 3 })
    );
}

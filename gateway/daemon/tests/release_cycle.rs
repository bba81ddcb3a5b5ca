//! A job's release testing end to end with the project's simulators: spectra served by the file
//! spectrometer, masses from the MT-SICS balance on a pseudo-terminal, the committed NIR model and
//! the core's release decision — every unit accounted for, doses converted with the weighed mass.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use dosegate::balance::{MtSicsBalance, open_serial};
use dosegate_core::inference::ValidatedModel;
use dosegate_core::instrument::{Balance, Spectrometer, WeighMode};
use dosegate_core::prescription::Prescription;
use dosegate_core::release::{Decision, MassSource, UnitMeasurement, decide_job};
use dosegate_core::spectrum::Spectrum;
use dosegate_instrument_sim::balance::{PtyBalance, SimBalance};
use dosegate_instrument_sim::spectrometer::FileSpectrometer;

const RX: &str = r#"
patient_ref = "pt-0001"
product = "dyrby-tablet"
dose_mg = 16.0
tolerance_pct = 15.0
units = 4

[formulation]
ink_lot = "LOT-7"
api_fraction = 0.08
density_g_cm3 = 1.2

[policy]
id = "tablet-demo"
version = 1
"#;

#[test]
fn every_unit_is_measured_weighed_and_decided() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let model =
        ValidatedModel::from_bytes(&std::fs::read(root.join("models/nir-dyrby2002.cbor")).unwrap())
            .unwrap();
    let spectra: Vec<Spectrum> = model
        .file()
        .reference_cases
        .iter()
        .map(|c| Spectrum::new(model.axis().clone(), c.spectrum.clone()).unwrap())
        .collect();
    let mut spectrometer = FileSpectrometer::from_spectra(spectra).unwrap();
    let pty = PtyBalance::spawn(Arc::new(Mutex::new(SimBalance::new()))).unwrap();
    let mut balance = MtSicsBalance::new(open_serial(pty.path()).unwrap());
    let rx = Prescription::from_toml(RX).unwrap();

    let masses = [200.0, 190.0, 212.5, 205.0];
    let mut measurements = Vec::new();
    for unit in 1..=3u32 {
        pty.balance()
            .lock()
            .unwrap()
            .place(masses[unit as usize - 1], 2);
        let spectrum = spectrometer.acquire(unit).unwrap();
        let weighing = balance.weigh(WeighMode::Stable).unwrap();
        measurements.push(UnitMeasurement {
            unit,
            spectrum: model.predict(&spectrum),
            mass_mg: Some(weighing.mass_mg),
        });
    }
    // Unit 4 was never measured.
    let account = decide_job(&rx, &measurements).unwrap();
    assert_eq!(account.units().len(), 4);
    assert_eq!(
        account.released()
            + account.released_with_warning()
            + account.quarantined()
            + account.rejected(),
        4
    );
    assert!(account.quarantined() >= 1);
    for (u, m) in account.units().iter().zip(&measurements) {
        let content = m.spectrum.as_ref().unwrap().value();
        let dose = content / 100.0 * masses[u.unit as usize - 1];
        match &u.decision {
            Decision::Released { dose: d } | Decision::ReleasedWithWarning { dose: d, .. } => {
                assert_eq!(d.mass_source, MassSource::Balance);
                assert!((d.dose_mg - dose).abs() < 1e-6);
                assert!((13.6..=18.4).contains(&dose));
            }
            Decision::Rejected { .. } => {
                let mass_ok = (170.0..=230.0).contains(&masses[u.unit as usize - 1]);
                assert!(!(13.6..=18.4).contains(&dose) || !mass_ok);
            }
            Decision::Quarantined { .. } => {
                assert!(!m.spectrum.as_ref().unwrap().in_domain());
            }
        }
    }
}

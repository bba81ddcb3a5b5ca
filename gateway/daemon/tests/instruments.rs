//! The instrument adapters against the project's simulators: the MT-SICS balance adapter over an
//! in-process link and over a real pseudo-terminal, and the drop-folder spectrometer.

use std::sync::{Arc, Mutex};

use dosegate::balance::{BalanceError, MtSicsBalance, open_serial};
use dosegate::spectrometer::{DropFolderError, DropFolderSpectrometer};
use dosegate_core::instrument::{Balance, MtSicsError, Spectrometer, WeighMode};
use dosegate_core::spectrum::{Axis, AxisUnit, Spectrum, jcamp};
use dosegate_instrument_sim::balance::{Fault, InProcessLink, PtyBalance, SimBalance};

#[test]
fn weighs_through_the_in_process_link_with_settling_and_faults() {
    let sim = Arc::new(Mutex::new(SimBalance::new()));
    sim.lock().unwrap().place(251.37, 1);
    let mut balance = MtSicsBalance::new(InProcessLink::new(Arc::clone(&sim)));
    let w = balance.weigh(WeighMode::Immediate).unwrap();
    assert!(!w.stable);
    let w = balance.weigh(WeighMode::Stable).unwrap();
    assert!(w.stable && (w.mass_mg - 251.37).abs() < 1e-9);
    sim.lock().unwrap().inject(Fault::Busy);
    assert!(matches!(
        balance.weigh(WeighMode::Stable),
        Err(BalanceError::Protocol(MtSicsError::Busy))
    ));
}

#[test]
fn weighs_a_balance_on_a_pseudo_terminal_opened_as_a_serial_port() {
    let sim = Arc::new(Mutex::new(SimBalance::new()));
    let pty = PtyBalance::spawn(Arc::clone(&sim)).unwrap();
    let port = open_serial(pty.path()).unwrap();
    let mut balance = MtSicsBalance::new(port);
    for mass in [198.42, 201.07, 250.0] {
        pty.balance().lock().unwrap().place(mass, 0);
        let w = balance.weigh(WeighMode::Stable).unwrap();
        assert!(w.stable && (w.mass_mg - mass).abs() < 1e-9, "{mass}: {w:?}");
    }
    pty.balance().lock().unwrap().inject(Fault::Overload);
    assert!(matches!(
        balance.weigh(WeighMode::Stable),
        Err(BalanceError::Protocol(MtSicsError::Overload))
    ));
}

#[test]
fn drop_folder_spectrometer_reads_exports_and_reports_missing_ones() {
    let dir = tempfile::tempdir().unwrap();
    let axis = Axis::new(AxisUnit::PerCentimetre, vec![3600.0, 3599.0, 3598.0]).unwrap();
    let s = Spectrum::new(axis, vec![1.0, 2.5, 3.25]).unwrap();
    std::fs::write(
        dir.path().join("unit-1.jdx"),
        jcamp::write_xypoints("u1", &s),
    )
    .unwrap();
    std::fs::write(dir.path().join("unit-2.jdx"), "not jcamp").unwrap();
    let mut spec = DropFolderSpectrometer::new(dir.path(), "unit-");
    assert_eq!(spec.acquire(1).unwrap(), s);
    assert!(matches!(
        spec.acquire(2),
        Err(DropFolderError::Unreadable { unit: 2, .. })
    ));
    assert!(matches!(
        spec.acquire(3),
        Err(DropFolderError::Missing { unit: 3, .. })
    ));
}

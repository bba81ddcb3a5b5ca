//! The DoseGate daemon's library: the I/O shell around `dosegate-core`.
//!
//! One module per device or service (adapters) and one per operator command (`cmd`). The binary
//! (`main.rs`) only parses arguments and dispatches here, and integration tests drive the same
//! code.

pub mod attest;
pub mod balance;
pub mod bootdisk;
pub mod cmd;
pub mod cpv_store;
pub mod fleet_state;
pub mod ledger;
pub mod lifecycle;
pub mod mqtt;
pub mod notify;
pub mod outbox;
pub mod printer;
pub mod serial;
pub mod spectra;
pub mod spectrometer;
pub mod stations;
pub mod status;
pub mod store;
pub mod tpm;
pub mod verify;

/// Peak resident memory of this process (Linux `VmHWM`), KiB; `None` where `/proc` has no such
/// line.
pub fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
}

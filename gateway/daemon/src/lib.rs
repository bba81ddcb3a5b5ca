//! The DoseGate daemon's library: the I/O shell around `dosegate-core`.
//!
//! One module per device or service (adapters) and one per operator command (`cmd`). The binary
//! (`main.rs`) only parses arguments and dispatches here, and integration tests drive the same
//! code.

pub mod attest;
pub mod balance;
pub mod cmd;
pub mod cpv_store;
pub mod fleet_state;
pub mod ledger;
pub mod mqtt;
pub mod notify;
pub mod serial;
pub mod spectra;
pub mod spectrometer;
pub mod store;
pub mod tpm;
pub mod verify;

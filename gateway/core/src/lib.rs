//! # dosegate-core
//!
//! The part of DoseGate that decides. It parses and verifies hub-signed jobs, analyses G-code
//! against a product's validated design space, and (in later modules) runs the printer protocol,
//! inference, the ledger and the release decision.
//!
//! It does **no I/O**: every function takes bytes, a time and keys as inputs and returns values.
//! Files, sockets, serial ports, the TPM and the clock belong to the daemon and the hub tool, which
//! pass what they read in here. That keeps every decision testable without hardware and keeps the
//! trusted code small.
//!
//! Verification returns proof types with private fields (for example [`job::VerifiedJob`]): code
//! further down accepts only the proof, so a skipped check does not compile.

#![forbid(unsafe_code)]
#![deny(missing_docs)]
#![cfg_attr(
    test,
    allow(clippy::float_cmp, reason = "tests compare exact values on purpose")
)]
#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

pub mod attest;
pub mod cbor;
pub mod config;
pub mod cpv;
pub mod envelope;
pub mod fleet;
pub mod gcode;
pub mod inference;
pub mod instrument;
pub mod job;
pub mod ledger;
pub mod lifecycle;
pub mod policy;
pub mod prescription;
pub mod printlet;
pub mod release;
pub mod spectrum;
pub mod stream;
pub mod trust;
pub mod update;

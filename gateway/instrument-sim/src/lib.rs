//! Simulated PAT instruments, part of the project for the demo and the tests: a spectrometer that
//! serves real spectra from files ([`spectrometer::FileSpectrometer`]) and a balance that speaks
//! MT-SICS ([`balance::SimBalance`]), either in-process ([`balance::InProcessLink`], a byte link
//! the daemon's serial adapter can drive) or on a pseudo-terminal ([`balance::PtyBalance`]), where
//! the daemon opens it exactly as it opens a USB serial balance.
//!
//! They are simulators of devices, not fakes of the gateway's logic: the daemon's adapters and the
//! core's codec run unchanged against them.

pub mod balance;
pub mod dropfolder;
pub mod spectrometer;

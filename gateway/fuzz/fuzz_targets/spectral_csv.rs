//! Any text offered as a spectral CSV in the shared layout: refused or parsed, never a panic.
#![no_main]

use dosegate_core::spectrum::{AxisUnit, csv};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(t) = csv::parse(text, AxisUnit::Nanometre) {
            for r in t.rows() {
                assert_eq!(r.spectrum.len(), t.axis().len());
            }
        }
    }
});

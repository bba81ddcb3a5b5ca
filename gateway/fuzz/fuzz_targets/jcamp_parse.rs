//! Any text offered as a JCAMP-DX spectrum (AFFN or ASDF): refused or parsed, never a panic.
#![no_main]

use dosegate_core::spectrum::jcamp;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(s) = jcamp::parse(text) {
            assert_eq!(s.len(), s.axis().len());
        }
    }
});

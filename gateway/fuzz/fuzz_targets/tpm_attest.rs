//! TPMS_ATTEST parsing: arbitrary bytes never panic, and what parses re-marshals to the same bytes
//! when it uses the 3-byte PCR bitmap a TPM emits.
#![no_main]

use dosegate_core::attest::quote::{marshal_attest, parse_attest};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(info) = parse_attest(data) {
        let again = marshal_attest(&info);
        assert_eq!(parse_attest(&again).ok(), Some(info));
    }
});

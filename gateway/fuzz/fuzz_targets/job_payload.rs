//! Any bytes as a job payload: the strict deterministic-CBOR decoder must never panic, and what
//! it accepts must re-encode to the same bytes.
#![no_main]

use dosegate_core::{cbor, job::Job};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(job) = cbor::from_slice::<Job>(data, 1 << 20) {
        assert_eq!(job.to_cbor().expect("encodes"), data);
        let _ = dosegate_core::job::decode_gcode(&job.gcode, 1 << 20);
    }
});

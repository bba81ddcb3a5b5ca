//! Segment scanning (torn-tail detection) and whole-ledger verification over arbitrary bytes.
#![no_main]

use dosegate_core::ledger::frame::scan;
use dosegate_core::ledger::verify::verify_records;
use dosegate_core::ledger::LedgerTrust;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let s = scan(data);
    assert!(s.good_len <= data.len());
    let trust = LedgerTrust {
        allow_insecure: true,
        ..LedgerTrust::default()
    };
    let _ = verify_records(s.records.iter().copied(), trust);
});

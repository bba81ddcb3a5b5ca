//! Ledger record decoding: any bytes either decode to a bounded record or are refused, and a
//! one-record ledger made of them is verified without panicking.
#![no_main]

use dosegate_core::ledger::verify::verify_records;
use dosegate_core::ledger::{LedgerTrust, Record};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = Record::decode(data);
    let trust = LedgerTrust {
        allow_insecure: true,
        ..LedgerTrust::default()
    };
    let _ = verify_records([data], trust);
});

//! Any bytes offered on `down/cmd` or `up/birth`/`up/death`: decoding never panics, and whatever
//! decodes re-encodes to the very same bytes (one meaning, one encoding).
#![no_main]

use dosegate_core::fleet::{Birth, Death, HubCommand};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = HubCommand::decode(data) {
        assert_eq!(cmd.to_cbor().expect("decoded command encodes"), data);
    }
    if let Ok(birth) = Birth::decode(data) {
        assert_eq!(birth.to_cbor().expect("decoded birth encodes"), data);
    }
    let _ = Death::decode(data);
});

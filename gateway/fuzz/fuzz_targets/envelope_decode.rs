//! Any bytes offered as a COSE_Sign1 job: decoding and verification must never panic, and
//! nothing verifies against a key that did not sign it.
#![no_main]

use dosegate_core::envelope::{self, ContentType, RoleKeys, SoftwareKey, Signer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let key = SoftwareKey::from_bytes(&[7u8; 32]).expect("fixed key");
    let keys = [key.public_key()];
    if let Ok(env) = envelope::decode(data, ContentType::Job, 1 << 20) {
        let _ = env.signer_ids();
        let _ = env.verify(&RoleKeys { keys: &keys, threshold: 1 });
    }
});

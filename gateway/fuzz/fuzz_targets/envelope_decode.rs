//! Any bytes offered as a COSE_Sign1 job: decoding and verification must never panic, and
//! nothing verifies against a key that did not sign it.
#![no_main]

use std::sync::LazyLock;

use dosegate_core::envelope::{self, ContentType, PublicKey, RoleKeys, Signer, SoftwareKey};
use libfuzzer_sys::fuzz_target;

static KEYS: LazyLock<[PublicKey; 1]> = LazyLock::new(|| {
    [SoftwareKey::from_bytes(&[7u8; 32]).expect("fixed key").public_key()]
});

fuzz_target!(|data: &[u8]| {
    let keys = &*KEYS;
    if let Ok(env) = envelope::decode(data, ContentType::Job, 1 << 20) {
        let _ = env.signer_ids();
        let _ = env.verify(&RoleKeys { keys, threshold: 1 });
    }
});

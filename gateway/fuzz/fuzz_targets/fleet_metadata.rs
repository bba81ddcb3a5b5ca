//! Any bytes offered on `fleet/down/{root,policies,models,revocation}`: the first byte picks the
//! decoder, the rest is the message. Verification never panics and nothing verifies without the
//! fixed hub's keys (which the fuzzer does not have).
#![no_main]

use std::collections::BTreeSet;
use std::sync::OnceLock;

use dosegate_core::envelope::{self, ContentType, Signer, SoftwareKey};
use dosegate_core::fleet::metadata::{
    RoleKeysInForce, verify_model_bundle, verify_policy_bundle, verify_revocation,
    verify_root_chain,
};
use dosegate_core::trust::{RoleSpec, Roles, TrustRoot, TrustedRoot};
use libfuzzer_sys::fuzz_target;

/// A version-1 root whose every role is one fixed key.
fn root() -> &'static TrustedRoot {
    static ROOT: OnceLock<TrustedRoot> = OnceLock::new();
    ROOT.get_or_init(|| {
        let key = SoftwareKey::from_bytes(&[0x21; 32]).expect("fixed key");
        let p = key.public_key();
        let spec = || RoleSpec {
            keyids: vec![p.key_id()],
            threshold: 1,
        };
        let meta = TrustRoot {
            keys: [(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()))]
                .into_iter()
                .collect(),
            roles: Roles {
                jobs: spec(),
                root: spec(),
                models: spec(),
                policies: spec(),
                revocation: spec(),
            },
            hub_id: "hub.fuzz".into(),
            expires: u64::MAX,
            version: 1,
        };
        let signers: [&dyn Signer; 1] = [&key];
        let bytes = envelope::sign(
            ContentType::TrustRoot,
            &meta.to_cbor().expect("encodes"),
            &signers,
        )
        .expect("signs");
        TrustedRoot::pin(&bytes, 0).expect("pins")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((which, message)) = data.split_first() else {
        return;
    };
    let revoked = BTreeSet::new();
    let keys = RoleKeysInForce {
        root: root(),
        revoked: &revoked,
    };
    let verified = match which % 4 {
        0 => verify_root_chain(message, root(), 0).is_ok_and(|r| !r.is_empty()),
        1 => verify_policy_bundle(message, &keys).is_ok(),
        2 => verify_model_bundle(message, &keys).is_ok(),
        _ => verify_revocation(message, &keys, 0).is_ok(),
    };
    assert!(!verified, "fuzzer input verified without the hub's key");
});

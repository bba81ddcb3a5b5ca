//! Any bytes offered as a hub receipt on `down/ack`: decoding and verification never panic, and
//! nothing verifies against a trust root whose `jobs` key did not sign it.
#![no_main]

use std::collections::BTreeMap;
use std::sync::LazyLock;

use dosegate_core::envelope::{self, ContentType, Signer, SoftwareKey};
use dosegate_core::fleet::{GatewayId, receipt};
use dosegate_core::trust::{RoleSpec, Roles, TrustRoot, TrustedRoot};
use libfuzzer_sys::fuzz_target;

static ROOT: LazyLock<TrustedRoot> = LazyLock::new(|| {
    let key = SoftwareKey::from_bytes(&[7u8; 32]).expect("fixed key");
    let p = key.public_key();
    let spec = || RoleSpec {
        keyids: vec![p.key_id()],
        threshold: 1,
    };
    let root = TrustRoot {
        keys: BTreeMap::from([(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()))]),
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
    let bytes = envelope::sign(
        ContentType::TrustRoot,
        &root.to_cbor().expect("root encodes"),
        &[&key as &dyn Signer],
    )
    .expect("root signs");
    TrustedRoot::pin(&bytes, 0).expect("root pins")
});

static GW: LazyLock<GatewayId> = LazyLock::new(|| GatewayId::new("spoke-01").expect("valid id"));

fuzz_target!(|data: &[u8]| {
    let _ = receipt::decode_unverified(data);
    let _ = receipt::verify(data, &ROOT, &GW);
});

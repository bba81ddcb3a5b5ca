use super::*;
use crate::envelope::{Signer, SoftwareKey};

pub(crate) fn key(n: u8) -> SoftwareKey {
    let mut secret = [0u8; 32];
    secret[0] = 0x22;
    secret[31] = n;
    SoftwareKey::from_bytes(&secret).unwrap()
}

fn spec(keys: &[&SoftwareKey], threshold: u32) -> RoleSpec {
    let mut keyids: Vec<KeyId> = keys.iter().map(|k| k.public_key().key_id()).collect();
    keyids.sort();
    RoleSpec { keyids, threshold }
}

fn root(
    version: u64,
    root_keys: &[&SoftwareKey],
    threshold: u32,
    jobs: &[&SoftwareKey],
) -> TrustRoot {
    let mut keys = BTreeMap::new();
    for k in root_keys.iter().chain(jobs) {
        let p = k.public_key();
        keys.insert(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()));
    }
    TrustRoot {
        keys,
        roles: Roles {
            jobs: spec(jobs, 1),
            root: spec(root_keys, threshold),
            models: spec(jobs, 1),
            policies: spec(jobs, 1),
            revocation: spec(root_keys, 1),
        },
        hub_id: "hub.test".into(),
        expires: 2_000_000_000,
        version,
    }
}

fn signed(root: &TrustRoot, signers: &[&SoftwareKey]) -> Vec<u8> {
    let signers: Vec<&dyn Signer> = signers.iter().map(|k| *k as &dyn Signer).collect();
    envelope::sign(ContentType::TrustRoot, &root.to_cbor().unwrap(), &signers).unwrap()
}

const NOW: u64 = 1_800_000_000;

#[test]
fn encoding_is_deterministic_cbor() {
    let (a, j) = (key(1), key(9));
    let bytes = root(1, &[&a], 1, &[&j]).to_cbor().unwrap();
    let value: ciborium::Value = ciborium::from_reader(&bytes[..]).unwrap();
    assert!(cbor::is_deterministic_value(&value));
}

#[test]
fn pins_a_self_signed_root() {
    let (a, b, j) = (key(1), key(2), key(9));
    let r = root(1, &[&a, &b], 2, &[&j]);
    let trusted = TrustedRoot::pin(&signed(&r, &[&a, &b]), NOW).unwrap();
    assert_eq!(
        trusted.role_keys(Role::Jobs)[0].key_id(),
        j.public_key().key_id()
    );
}

#[test]
fn refuses_root_below_its_own_threshold() {
    let (a, b, j) = (key(1), key(2), key(9));
    let r = root(1, &[&a, &b], 2, &[&j]);
    let err = TrustedRoot::pin(&signed(&r, &[&a]), NOW).unwrap_err();
    assert_eq!(
        err,
        TrustError::Envelope(EnvelopeError::BelowThreshold {
            valid: 1,
            threshold: 2
        })
    );
}

#[test]
fn refuses_expired_root() {
    let (a, j) = (key(1), key(9));
    let mut r = root(1, &[&a], 1, &[&j]);
    r.expires = NOW - 1;
    assert!(matches!(
        TrustedRoot::pin(&signed(&r, &[&a]), NOW),
        Err(TrustError::Expired { .. })
    ));
}

#[test]
fn refuses_threshold_larger_than_role() {
    let (a, j) = (key(1), key(9));
    let r = root(1, &[&a], 2, &[&j]);
    assert_eq!(
        TrustedRoot::pin(&signed(&r, &[&a]), NOW).unwrap_err(),
        TrustError::BadThreshold {
            role: "root",
            threshold: 2,
            keys: 1
        }
    );
}

#[test]
fn refuses_key_listed_under_a_false_id() {
    let (a, j) = (key(1), key(9));
    let mut r = root(1, &[&a], 1, &[&j]);
    let sec1 = r.keys.remove(&j.public_key().key_id()).unwrap();
    let wrong = key(8).public_key().key_id();
    r.keys.insert(wrong, sec1);
    r.roles.jobs.keyids = vec![wrong];
    assert_eq!(
        TrustedRoot::pin(&signed(&r, &[&a]), NOW).unwrap_err(),
        TrustError::BadKey { key_id: wrong }
    );
}

#[test]
fn rotation_needs_old_and_new_root_thresholds() {
    let (a, b, c, j) = (key(1), key(2), key(3), key(9));
    let v1 = TrustedRoot::pin(&signed(&root(1, &[&a], 1, &[&j]), &[&a]), NOW).unwrap();
    // v2 moves the root role from a to {b, c} with threshold 2.
    let v2 = root(2, &[&b, &c], 2, &[&j]);
    // Signed only by the new keys: the old root never agreed.
    assert_eq!(
        v1.rotate(&signed(&v2, &[&b, &c]), NOW).unwrap_err(),
        TrustError::Envelope(EnvelopeError::UnknownKey {
            key_id: Some(b.public_key().key_id())
        })
    );
    // Signed by the old key and one new key: below the new threshold.
    assert_eq!(
        v1.rotate(&signed(&v2, &[&a, &b]), NOW).unwrap_err(),
        TrustError::Envelope(EnvelopeError::BelowThreshold {
            valid: 1,
            threshold: 2
        })
    );
    let v2t = v1.rotate(&signed(&v2, &[&a, &b, &c]), NOW).unwrap();
    assert_eq!(v2t.metadata().version, 2);
}

#[test]
fn rotation_refuses_rollback_and_skips() {
    let (a, j) = (key(1), key(9));
    let v1 = TrustedRoot::pin(&signed(&root(5, &[&a], 1, &[&j]), &[&a]), NOW).unwrap();
    for v in [4, 5, 7] {
        assert_eq!(
            v1.rotate(&signed(&root(v, &[&a], 1, &[&j]), &[&a]), NOW)
                .unwrap_err(),
            TrustError::VersionNotNext { current: 5, new: v }
        );
    }
}

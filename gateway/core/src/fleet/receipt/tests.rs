use std::collections::BTreeMap;

use super::*;
use crate::envelope::{KeyId, SoftwareKey};
use crate::trust::{RoleSpec, Roles, TrustRoot};

fn key(n: u8) -> SoftwareKey {
    let mut secret = [0u8; 32];
    secret[0] = 0x33;
    secret[31] = n;
    SoftwareKey::from_bytes(&secret).unwrap()
}

fn spec(keys: &[&SoftwareKey], threshold: u32) -> RoleSpec {
    let mut keyids: Vec<KeyId> = keys.iter().map(|k| k.public_key().key_id()).collect();
    keyids.sort();
    RoleSpec { keyids, threshold }
}

/// A root whose `jobs` role is `jobs` with `threshold`; `root` also holds the other roles.
fn trusted(root_key: &SoftwareKey, jobs: &[&SoftwareKey], threshold: u32) -> TrustedRoot {
    let mut keys = BTreeMap::new();
    for k in std::iter::once(root_key).chain(jobs.iter().copied()) {
        let p = k.public_key();
        keys.insert(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()));
    }
    let root = TrustRoot {
        keys,
        roles: Roles {
            jobs: spec(jobs, threshold),
            root: spec(&[root_key], 1),
            models: spec(&[root_key], 1),
            policies: spec(&[root_key], 1),
            revocation: spec(&[root_key], 1),
        },
        hub_id: "hub.test".into(),
        expires: 2_000_000_000,
        version: 1,
    };
    let bytes = envelope::sign(
        ContentType::TrustRoot,
        &root.to_cbor().unwrap(),
        &[root_key],
    )
    .unwrap();
    TrustedRoot::pin(&bytes, 1_800_000_000).unwrap()
}

fn gw(id: &str) -> GatewayId {
    GatewayId::new(id).unwrap()
}

fn payload(id: &str, seq: u64) -> ReceiptPayload {
    ReceiptPayload {
        v: FLEET_FORMAT_VERSION,
        gw: gw(id),
        seq,
        hash: [0xab; 32],
        time: 1_800_000_000_000,
    }
}

#[test]
fn verifies_a_receipt_signed_by_the_jobs_role() {
    let (r, j) = (key(1), key(2));
    let root = trusted(&r, &[&j], 1);
    let bytes = sign(&payload("spoke-01", 41), &[&j]).unwrap();
    let receipt = verify(&bytes, &root, &gw("spoke-01")).unwrap();
    assert_eq!(receipt.seq(), 41);
    assert_eq!(receipt.hash(), &[0xab; 32]);
    assert_eq!(receipt.gateway(), &gw("spoke-01"));
    let value: ciborium::Value = ciborium::from_reader(
        &decode_unverified(&bytes)
            .map(|p| cbor::to_vec(&p).unwrap())
            .unwrap()[..],
    )
    .unwrap();
    assert!(cbor::is_deterministic_value(&value));
}

#[test]
fn refuses_a_receipt_signed_by_a_key_outside_the_jobs_role() {
    let (r, j, stranger) = (key(1), key(2), key(3));
    let root = trusted(&r, &[&j], 1);
    // The root key holds other roles, but not `jobs`.
    for signer in [&stranger, &r] {
        let bytes = sign(&payload("spoke-01", 1), &[signer]).unwrap();
        assert!(matches!(
            verify(&bytes, &root, &gw("spoke-01")),
            Err(ReceiptError::Envelope(EnvelopeError::UnknownKey { .. }))
        ));
    }
}

#[test]
fn refuses_a_receipt_below_the_jobs_threshold() {
    let (r, j1, j2) = (key(1), key(2), key(3));
    let root = trusted(&r, &[&j1, &j2], 2);
    let bytes = sign(&payload("spoke-01", 1), &[&j1]).unwrap();
    assert_eq!(
        verify(&bytes, &root, &gw("spoke-01")),
        Err(ReceiptError::Envelope(EnvelopeError::BelowThreshold {
            valid: 1,
            threshold: 2
        }))
    );
    let bytes = sign(&payload("spoke-01", 1), &[&j1, &j2]).unwrap();
    assert!(verify(&bytes, &root, &gw("spoke-01")).is_ok());
}

#[test]
fn refuses_a_receipt_for_another_gateway() {
    let (r, j) = (key(1), key(2));
    let root = trusted(&r, &[&j], 1);
    let bytes = sign(&payload("spoke-02", 1), &[&j]).unwrap();
    assert_eq!(
        verify(&bytes, &root, &gw("spoke-01")),
        Err(ReceiptError::WrongGateway {
            expected: gw("spoke-01"),
            found: gw("spoke-02")
        })
    );
}

#[test]
fn refuses_a_job_envelope_posing_as_a_receipt() {
    let (r, j) = (key(1), key(2));
    let root = trusted(&r, &[&j], 1);
    let body = cbor::to_vec(&payload("spoke-01", 1)).unwrap();
    let bytes = envelope::sign(ContentType::Job, &body, &[&j]).unwrap();
    assert!(matches!(
        verify(&bytes, &root, &gw("spoke-01")),
        Err(ReceiptError::Envelope(
            EnvelopeError::WrongContentType { .. }
        ))
    ));
}

#[test]
fn refuses_a_tampered_receipt() {
    let (r, j) = (key(1), key(2));
    let root = trusted(&r, &[&j], 1);
    let mut bytes = sign(&payload("spoke-01", 1), &[&j]).unwrap();
    // The hash byte string is inside the payload; flip one of its bytes.
    let at = bytes.windows(4).position(|w| w == [0xab; 4]).unwrap();
    bytes[at] ^= 1;
    assert!(matches!(
        verify(&bytes, &root, &gw("spoke-01")),
        Err(ReceiptError::Envelope(EnvelopeError::BadSignature { .. }))
    ));
}

#[test]
fn refuses_an_oversized_receipt_before_decoding() {
    let (r, j) = (key(1), key(2));
    let root = trusted(&r, &[&j], 1);
    assert_eq!(
        verify(&vec![0u8; MAX_RECEIPT_BYTES + 1], &root, &gw("spoke-01")),
        Err(ReceiptError::Envelope(EnvelopeError::TooLarge {
            len: MAX_RECEIPT_BYTES + 1,
            max: MAX_RECEIPT_BYTES
        }))
    );
}

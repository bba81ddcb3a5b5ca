use super::*;

fn key(n: u8) -> SoftwareKey {
    let mut secret = [0u8; 32];
    secret[31] = n;
    secret[0] = 0x11;
    SoftwareKey::from_bytes(&secret).unwrap()
}

fn role(keys: &[PublicKey], threshold: usize) -> RoleKeys<'_> {
    RoleKeys { keys, threshold }
}

const MAX: usize = 1 << 20;

#[test]
fn single_signature_round_trips() {
    let k = key(1);
    let bytes = sign(ContentType::Job, b"payload", &[&k]).unwrap();
    let keys = [k.public_key()];
    let verified = decode(&bytes, ContentType::Job, MAX)
        .unwrap()
        .verify(&role(&keys, 1))
        .unwrap();
    assert_eq!(verified.payload(), b"payload");
    assert!(verified.signers().contains(&k.public_key().key_id()));
}

#[test]
fn countersignatures_meet_a_threshold() {
    let (a, b, c) = (key(1), key(2), key(3));
    let bytes = sign(ContentType::TrustRoot, b"root", &[&a, &b]).unwrap();
    let keys = [a.public_key(), b.public_key(), c.public_key()];
    let v = decode(&bytes, ContentType::TrustRoot, MAX)
        .unwrap()
        .verify(&role(&keys, 2))
        .unwrap();
    assert_eq!(v.signers().len(), 2);
    let err = decode(&bytes, ContentType::TrustRoot, MAX)
        .unwrap()
        .verify(&role(&keys, 3))
        .unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::BelowThreshold {
            valid: 2,
            threshold: 3
        }
    );
}

#[test]
fn same_key_twice_counts_once() {
    let a = key(1);
    let bytes = sign(ContentType::Job, b"x", &[&a, &a]).unwrap();
    let keys = [a.public_key(), key(2).public_key()];
    let err = decode(&bytes, ContentType::Job, MAX)
        .unwrap()
        .verify(&role(&keys, 2))
        .unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::BelowThreshold {
            valid: 1,
            threshold: 2
        }
    );
}

#[test]
fn rejects_flipped_payload_byte_as_bad_signature() {
    let k = key(1);
    let mut bytes = sign(ContentType::Job, b"payload-bytes", &[&k]).unwrap();
    let pos = bytes.windows(5).position(|w| w == b"paylo").unwrap();
    bytes[pos] ^= 0x20;
    let keys = [k.public_key()];
    let err = decode(&bytes, ContentType::Job, MAX)
        .unwrap()
        .verify(&role(&keys, 1))
        .unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::BadSignature {
            key_id: k.public_key().key_id()
        }
    );
}

#[test]
fn rejects_signature_by_unknown_key() {
    let (a, b) = (key(1), key(2));
    let bytes = sign(ContentType::Job, b"x", &[&b]).unwrap();
    let keys = [a.public_key()];
    let err = decode(&bytes, ContentType::Job, MAX)
        .unwrap()
        .verify(&role(&keys, 1))
        .unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::UnknownKey {
            key_id: Some(b.public_key().key_id())
        }
    );
}

#[test]
fn rejects_job_signature_presented_as_receipt() {
    let k = key(1);
    let bytes = sign(ContentType::Job, b"x", &[&k]).unwrap();
    assert!(matches!(
        decode(&bytes, ContentType::Receipt, MAX),
        Err(EnvelopeError::WrongContentType {
            expected: ContentType::Receipt,
            ..
        })
    ));
}

#[test]
fn rejects_untagged_and_truncated_and_oversized() {
    let k = key(1);
    let bytes = sign(ContentType::Job, b"x", &[&k]).unwrap();
    assert!(matches!(
        decode(&bytes[1..], ContentType::Job, MAX),
        Err(EnvelopeError::Malformed { .. })
    ));
    assert!(matches!(
        decode(&bytes[..bytes.len() - 1], ContentType::Job, MAX),
        Err(EnvelopeError::Malformed { .. })
    ));
    assert_eq!(
        decode(&bytes, ContentType::Job, 8).unwrap_err(),
        EnvelopeError::TooLarge {
            len: bytes.len(),
            max: 8
        }
    );
}

#[test]
fn rejects_stripped_countersignature_for_threshold_two() {
    // An attacker removes the countersignature: the body signature alone is below threshold 2.
    let (a, b) = (key(1), key(2));
    let two = sign(ContentType::Job, b"x", &[&a, &b]).unwrap();
    let one = sign(ContentType::Job, b"x", &[&a]).unwrap();
    assert!(two.len() > one.len());
    let keys = [a.public_key(), b.public_key()];
    let err = decode(&one, ContentType::Job, MAX)
        .unwrap()
        .verify(&role(&keys, 2))
        .unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::BelowThreshold {
            valid: 1,
            threshold: 2
        }
    );
}

#[test]
fn countersignature_is_bound_to_the_body_signature() {
    // Graft b's countersignature from one envelope onto a differently signed body: it must fail.
    let (a, b) = (key(1), key(2));
    let env_ab = sign(ContentType::Job, b"x", &[&a, &b]).unwrap();
    let sign1 = CoseSign1::from_tagged_slice(&env_ab).unwrap();
    let mut other =
        CoseSign1::from_tagged_slice(&sign(ContentType::Job, b"y", &[&a]).unwrap()).unwrap();
    other.unprotected = sign1.unprotected.clone();
    let grafted = other.to_tagged_vec().unwrap();
    let keys = [a.public_key(), b.public_key()];
    let err = decode(&grafted, ContentType::Job, MAX)
        .unwrap()
        .verify(&role(&keys, 2))
        .unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::BadSignature {
            key_id: b.public_key().key_id()
        }
    );
}

#[test]
fn rejects_high_s_signature_malleation() {
    use p256::elliptic_curve::ops::Neg;
    let k = key(1);
    let bytes = sign(ContentType::Job, b"x", &[&k]).unwrap();
    let mut sign1 = CoseSign1::from_tagged_slice(&bytes).unwrap();
    let sig = Signature::from_slice(&sign1.signature).unwrap();
    let (r, s) = sig.split_scalars();
    let high = Signature::from_scalars(r, s.as_ref().neg()).unwrap();
    sign1.signature = high.to_bytes().to_vec();
    let malleated = sign1.to_tagged_vec().unwrap();
    let keys = [k.public_key()];
    let err = decode(&malleated, ContentType::Job, MAX)
        .unwrap()
        .verify(&role(&keys, 1))
        .unwrap_err();
    assert_eq!(
        err,
        EnvelopeError::BadSignature {
            key_id: k.public_key().key_id()
        }
    );
}

#[test]
fn a_signature_with_no_kid_is_not_counted() {
    let k = key(1);
    let bytes = sign(ContentType::Job, b"x", &[&k]).unwrap();
    let mut sign1 = CoseSign1::from_tagged_slice(&bytes).unwrap();
    sign1.protected.header.key_id.clear();
    sign1.protected.original_data = None;
    let stripped = sign1.to_tagged_vec().unwrap();
    let keys = [k.public_key()];
    let err = decode(&stripped, ContentType::Job, MAX)
        .unwrap()
        .verify(&role(&keys, 1))
        .unwrap_err();
    assert_eq!(err, EnvelopeError::UnknownKey { key_id: None });
}

/// The in-place re-encoding check says exactly what encoding a clone and comparing would say.
#[test]
fn in_place_reencoding_check_agrees_with_encoding_a_clone() {
    let (a, b) = (key(1), key(2));
    let big = vec![0x47u8; 70_000];
    let mut cases = Vec::new();
    for payload in [&b"x"[..], &[][..], &big[..]] {
        cases.push(sign(ContentType::Job, payload, &[&a]).unwrap());
        cases.push(sign(ContentType::Job, payload, &[&a, &b]).unwrap());
    }
    // Not deterministic: the payload's length written in a longer head than needed
    // (0x58 0x01 'x' for 0x41 'x').
    let short = sign(ContentType::Job, b"x", &[&a]).unwrap();
    let at = short.windows(2).position(|w| w == [0x41, b'x']).unwrap();
    let mut long_head = short[..at].to_vec();
    long_head.extend_from_slice(&[0x58, 0x01, b'x']);
    long_head.extend_from_slice(&short[at + 2..]);
    cases.push(long_head);
    // A detached payload (null) is encoded again as null.
    let mut detached = CoseSign1::from_tagged_slice(&short).unwrap();
    detached.payload = None;
    cases.push(detached.to_tagged_vec().unwrap());
    for bytes in &cases {
        let sign1 = CoseSign1::from_tagged_slice(bytes).unwrap();
        let by_clone = sign1.clone().to_tagged_vec().unwrap() == *bytes;
        assert_eq!(reencodes_to(&sign1, bytes).unwrap(), by_clone);
        // Every byte changed, dropped or added at the end is seen.
        assert!(!reencodes_to(&sign1, &bytes[..bytes.len() - 1]).unwrap());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(!reencodes_to(&sign1, &longer).unwrap());
    }
    assert!(!reencodes_to(&CoseSign1::from_tagged_slice(&cases[6]).unwrap(), &cases[6]).unwrap());
    assert!(matches!(
        decode(&cases[6], ContentType::Job, MAX),
        Err(EnvelopeError::Malformed { .. })
    ));
}

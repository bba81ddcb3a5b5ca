//! Any bytes offered as an enrollment request (hub side) or an attestation answer on `up/attest`:
//! decoding and verification never panic, a request that verifies names the keys it carries, and
//! an answer that decodes re-encodes to the same bytes.
#![no_main]

use dosegate_core::envelope::{PublicKey, Signer as _, SoftwareKey};
use dosegate_core::fleet::attest::verify_answer;
use dosegate_core::fleet::enroll::verify_request;
use dosegate_core::fleet::{AttestAnswer, GatewayId};
use libfuzzer_sys::fuzz_target;

fn ak() -> PublicKey {
    SoftwareKey::from_bytes(&[0x44; 32]).expect("fixed key").public_key()
}

fuzz_target!(|data: &[u8]| {
    if let Ok(id) = verify_request(data) {
        assert_ne!(id.tls_key(), id.ak().key());
    }
    if let Ok(answer) = AttestAnswer::decode(data) {
        assert_eq!(answer.to_cbor().expect("decoded answer encodes"), data);
    }
    let gw = GatewayId::new("spoke-01").expect("fixed id");
    let _ = verify_answer(data, &gw, &ak(), &[9; 32], None);
});

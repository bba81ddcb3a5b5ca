//! Enrollment of a gateway's TPM identity at the hub: the request a field engineer carries from
//! the box (`dosegate tpm enroll-request`) to the hub (`dosegate-hub fleet enroll --request`).
//!
//! The request ([`EnrollmentRequest`], deterministic CBOR, at most [`MAX_ENROLLMENT_BYTES`]) names
//! the gateway and carries two TPM-resident public keys:
//! - the **attestation key** (AK) as its marshalled `TPMT_PUBLIC`, which the hub checks
//!   (restricted ECDSA P-256 signing, fixedTPM, fixedParent, sensitiveDataOrigin) and keeps to
//!   verify the gateway's quotes later;
//! - the **mTLS client key** (unrestricted ECDSA P-256, never exported), for which the hub issues
//!   the client certificate (CN = gateway id);
//!
//! and a proof of possession: the TLS key's ES256 signature over the deterministic CBOR of every
//! other field (like a CSR's self-signature), so a request cannot carry a key its maker does not
//! hold. [`verify_request`] returns an [`EnrolledIdentity`] (private fields), the only input the
//! hub's certificate issuance accepts.
//!
//! What it does **not** prove: that the TLS key lives in the same TPM as the AK (`TPM2_Certify`
//! by the AK would); the hub trusts the field engineer's hand-carry for that, as for the EK.
//! Does no I/O.

use serde::{Deserialize, Serialize};

use super::{FLEET_FORMAT_VERSION, GatewayId};
use crate::attest::credential::{CheckedAk, CredentialError, MAX_PUBLIC_LEN, check_ak_public};
use crate::cbor::{self, CborError};
use crate::envelope::{PublicKey, SignError, Signer};

/// Largest enrollment request accepted, bytes.
pub const MAX_ENROLLMENT_BYTES: usize = 4096;

/// What the TLS key signs (every field but the signature). Deterministic key order.
#[derive(Serialize)]
struct Signed<'a> {
    v: u8,
    #[serde(with = "serde_bytes")]
    ak: &'a [u8],
    gw: &'a GatewayId,
    #[serde(with = "serde_bytes")]
    tls: &'a [u8],
    #[serde(with = "serde_bytes")]
    area: &'a [u8],
}

/// An enrollment request as carried. Fields are in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollmentRequest {
    /// Format version.
    pub v: u8,
    /// The AK's public key, SEC1 uncompressed.
    #[serde(with = "serde_bytes")]
    pub ak: Vec<u8>,
    /// The gateway (its certificate's CN).
    pub gw: GatewayId,
    /// The TLS key's signature (r‖s) over the other fields.
    #[serde(with = "serde_bytes")]
    pub pop: Vec<u8>,
    /// The mTLS client key's public key, SEC1 uncompressed.
    #[serde(with = "serde_bytes")]
    pub tls: Vec<u8>,
    /// The AK's marshalled `TPMT_PUBLIC`.
    #[serde(with = "serde_bytes")]
    pub area: Vec<u8>,
}

/// Why an enrollment request was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnrollError {
    /// Not a valid request encoding (includes the size cap).
    #[error("enrollment request: {0}")]
    Cbor(#[from] CborError),
    /// Unsupported format version.
    #[error("enrollment request format version {found} (expected {FLEET_FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u8,
    },
    /// A public key is not a valid P-256 point.
    #[error("enrollment request: the {which} key is not a P-256 point")]
    BadKey {
        /// `ak` or `tls`.
        which: &'static str,
    },
    /// The AK's public area fails the attestation-key checks.
    #[error("enrollment request: attestation key: {0}")]
    Ak(#[from] CredentialError),
    /// The TLS key and the AK are the same key.
    #[error("enrollment request: the TLS key must not be the attestation key")]
    SameKey,
    /// The proof of possession does not verify under the TLS key.
    #[error("enrollment request: the TLS key's proof of possession does not verify")]
    BadProof,
    /// The TLS key could not sign (building a request).
    #[error("enrollment request: {0}")]
    Sign(#[from] SignError),
}

impl EnrollError {
    /// A stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Cbor(_) => "enroll-malformed",
            Self::Version { .. } => "enroll-version",
            Self::BadKey { .. } => "enroll-bad-key",
            Self::Ak(_) => "enroll-bad-ak",
            Self::SameKey => "enroll-same-key",
            Self::BadProof => "enroll-bad-proof",
            Self::Sign(_) => "enroll-sign-failed",
        }
    }
}

/// A request whose AK passed the checks and whose TLS key proved possession. Private fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledIdentity {
    gateway: GatewayId,
    ak: CheckedAk,
    ak_area: Vec<u8>,
    tls_key: PublicKey,
}

impl EnrolledIdentity {
    /// The gateway.
    pub fn gateway(&self) -> &GatewayId {
        &self.gateway
    }
    /// The checked attestation key (key and TPM name).
    pub fn ak(&self) -> &CheckedAk {
        &self.ak
    }
    /// The AK's marshalled public area, for the hub to keep.
    pub fn ak_area(&self) -> &[u8] {
        &self.ak_area
    }
    /// The mTLS client key to certify.
    pub fn tls_key(&self) -> &PublicKey {
        &self.tls_key
    }
}

/// Builds a request on the gateway: `tls` is the TPM-held mTLS key (it signs the proof).
pub fn build_request(
    gw: &GatewayId,
    ak: &PublicKey,
    ak_area: &[u8],
    tls: &dyn Signer,
) -> Result<Vec<u8>, EnrollError> {
    let ak_sec1 = ak.to_sec1();
    let tls_sec1 = tls.public_key().to_sec1();
    let signed = cbor::to_vec(&Signed {
        v: FLEET_FORMAT_VERSION,
        ak: &ak_sec1,
        gw,
        tls: &tls_sec1,
        area: ak_area,
    })?;
    let pop = tls.sign(&signed)?;
    Ok(cbor::to_vec(&EnrollmentRequest {
        v: FLEET_FORMAT_VERSION,
        ak: ak_sec1,
        gw: gw.clone(),
        pop: pop.to_vec(),
        tls: tls_sec1,
        area: ak_area.to_vec(),
    })?)
}

/// Verifies a request at the hub: encoding and bounds, AK attributes, distinct keys, proof of
/// possession by the TLS key.
pub fn verify_request(bytes: &[u8]) -> Result<EnrolledIdentity, EnrollError> {
    let req: EnrollmentRequest = cbor::from_slice(bytes, MAX_ENROLLMENT_BYTES)?;
    if req.v != FLEET_FORMAT_VERSION {
        return Err(EnrollError::Version { found: req.v });
    }
    if req.area.len() > MAX_PUBLIC_LEN {
        return Err(EnrollError::Ak(CredentialError::TooLarge {
            len: req.area.len(),
        }));
    }
    let ak = PublicKey::from_sec1(&req.ak).map_err(|_| EnrollError::BadKey { which: "ak" })?;
    let tls_key =
        PublicKey::from_sec1(&req.tls).map_err(|_| EnrollError::BadKey { which: "tls" })?;
    if ak == tls_key {
        return Err(EnrollError::SameKey);
    }
    let checked = check_ak_public(&req.area, &ak)?;
    let signed = cbor::to_vec(&Signed {
        v: req.v,
        ak: &req.ak,
        gw: &req.gw,
        tls: &req.tls,
        area: &req.area,
    })?;
    if !tls_key.verify(&signed, &req.pop) {
        return Err(EnrollError::BadProof);
    }
    Ok(EnrolledIdentity {
        gateway: req.gw,
        ak: checked,
        ak_area: req.area,
        tls_key,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::SoftwareKey;

    /// A marshalled `TPMT_PUBLIC` of a restricted ECDSA P-256 signing key with `key`'s point.
    fn ak_area(key: &PublicKey) -> Vec<u8> {
        let sec1 = key.to_sec1();
        let mut out = Vec::new();
        out.extend_from_slice(&0x0023u16.to_be_bytes()); // ECC
        out.extend_from_slice(&0x000bu16.to_be_bytes()); // SHA-256
        // fixedTPM | fixedParent | sensitiveDataOrigin | userWithAuth | restricted | sign
        out.extend_from_slice(&0x0005_0072u32.to_be_bytes());
        out.extend_from_slice(&0u16.to_be_bytes()); // authPolicy
        out.extend_from_slice(&0x0010u16.to_be_bytes()); // symmetric: NULL
        out.extend_from_slice(&0x0018u16.to_be_bytes()); // ECDSA
        out.extend_from_slice(&0x000bu16.to_be_bytes()); // SHA-256
        out.extend_from_slice(&0x0003u16.to_be_bytes()); // NIST P-256
        out.extend_from_slice(&0x0010u16.to_be_bytes()); // kdf: NULL
        for coord in [&sec1[1..33], &sec1[33..65]] {
            out.extend_from_slice(&32u16.to_be_bytes());
            out.extend_from_slice(coord);
        }
        out
    }

    fn keys() -> (SoftwareKey, SoftwareKey) {
        (
            SoftwareKey::from_bytes(&[0x11; 32]).unwrap(),
            SoftwareKey::from_bytes(&[0x22; 32]).unwrap(),
        )
    }

    #[test]
    fn a_request_built_on_the_gateway_verifies_at_the_hub() {
        let (ak, tls) = keys();
        let gw = GatewayId::new("spoke-01").unwrap();
        let area = ak_area(&ak.public_key());
        let bytes = build_request(&gw, &ak.public_key(), &area, &tls).unwrap();
        assert!(bytes.len() <= MAX_ENROLLMENT_BYTES);
        let id = verify_request(&bytes).unwrap();
        assert_eq!(id.gateway(), &gw);
        assert_eq!(id.tls_key(), &tls.public_key());
        assert_eq!(id.ak().key(), &ak.public_key());
        assert_eq!(id.ak_area(), area.as_slice());
    }

    #[test]
    fn refuses_a_request_whose_key_was_swapped_after_signing() {
        let (ak, tls) = keys();
        let gw = GatewayId::new("spoke-01").unwrap();
        let area = ak_area(&ak.public_key());
        let bytes = build_request(&gw, &ak.public_key(), &area, &tls).unwrap();
        let mut req: EnrollmentRequest = cbor::from_slice(&bytes, MAX_ENROLLMENT_BYTES).unwrap();
        let attacker = SoftwareKey::from_bytes(&[0x33; 32]).unwrap();
        req.tls = attacker.public_key().to_sec1();
        let err = verify_request(&cbor::to_vec(&req).unwrap()).unwrap_err();
        assert_eq!(err, EnrollError::BadProof);
        assert_eq!(err.code(), "enroll-bad-proof");
        // Renaming the gateway breaks the proof too.
        let mut req: EnrollmentRequest = cbor::from_slice(&bytes, MAX_ENROLLMENT_BYTES).unwrap();
        req.gw = GatewayId::new("spoke-02").unwrap();
        assert_eq!(
            verify_request(&cbor::to_vec(&req).unwrap()),
            Err(EnrollError::BadProof)
        );
    }

    #[test]
    fn refuses_an_unrestricted_ak_and_the_ak_as_tls_key() {
        let (ak, tls) = keys();
        let gw = GatewayId::new("spoke-01").unwrap();
        let mut area = ak_area(&ak.public_key());
        area[4..8].copy_from_slice(&0x0004_0072u32.to_be_bytes()); // restricted bit cleared
        let bytes = build_request(&gw, &ak.public_key(), &area, &tls).unwrap();
        assert!(matches!(
            verify_request(&bytes),
            Err(EnrollError::Ak(CredentialError::WrongAttributes { .. }))
        ));
        let area = ak_area(&ak.public_key());
        let bytes = build_request(&gw, &ak.public_key(), &area, &ak).unwrap();
        assert_eq!(verify_request(&bytes), Err(EnrollError::SameKey));
    }

    #[test]
    fn refuses_oversized_and_garbage_requests() {
        assert!(matches!(
            verify_request(&vec![0u8; MAX_ENROLLMENT_BYTES + 1]),
            Err(EnrollError::Cbor(CborError::TooLarge { .. }))
        ));
        assert!(matches!(verify_request(&[0xa0]), Err(EnrollError::Cbor(_))));
    }
}

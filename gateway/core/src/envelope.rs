//! Signed envelopes: COSE_Sign1 (RFC 9052) with ES256 over deterministic CBOR payloads.
//!
//! Every signed DoseGate object (job, trust root, policy and model bundles, receipts, ledger
//! entries) is one tagged `COSE_Sign1`. Its protected header names the algorithm (ES256 only), the
//! signer's key id and the content type, so a signature over a job can never be replayed as a
//! receipt. When a role needs a k-of-n threshold, the second and later signers add **full
//! countersignatures** (RFC 9338, `COSE_Countersignature` V2 in unprotected header label 11) over
//! the same body: the envelope stays a plain `COSE_Sign1` that any COSE library can read, and each
//! countersignature covers the protected header, the payload and the first signature.
//!
//! Decoding is strict: the input is size-capped, must be the tagged form, and must re-encode to
//! the same bytes. Verification against a role returns [`Verified`], the only way to reach the
//! payload of a checked envelope. This module does no I/O; signing goes through the [`Signer`]
//! trait so a TPM-held key can sign without its private part ever entering this process.

use std::collections::BTreeSet;
use std::fmt;

use coset::cbor::value::Value;
use coset::{
    AsCborValue, CborSerializable, CoseSign1, CoseSign1Builder, Header, HeaderBuilder, Label,
    TaggedCborSerializable, iana,
};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::{Signature, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cbor;

/// Unprotected header label of `COSE_Countersignature` (RFC 9338 §3.1).
const COUNTERSIGNATURE_LABEL: i64 = 11;
/// Context string of a V2 full countersignature (RFC 9338 §3.3).
const COUNTERSIGN_CONTEXT: &str = "CounterSignatureV2";
/// At most this many signatures on one envelope; more is refused before any is checked.
pub const MAX_SIGNATURES: usize = 16;

/// The identifier of a public key: SHA-256 of its SEC1 uncompressed encoding.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(#[serde(with = "serde_bytes")] [u8; 32]);

impl KeyId {
    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Parses a key id from bytes (it must be exactly 32 long).
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(KeyId)
    }

    /// Lowercase hex, the form shown to people.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", &self.to_hex()[..16])
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// A P-256 public key that may verify ES256 signatures.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    key: VerifyingKey,
    id: KeyId,
}

impl PublicKey {
    /// Parses a SEC1-encoded (compressed or uncompressed) P-256 point.
    pub fn from_sec1(bytes: &[u8]) -> Result<Self, EnvelopeError> {
        let key = VerifyingKey::from_sec1_bytes(bytes).map_err(|_| EnvelopeError::BadPublicKey)?;
        Ok(Self::from_verifying_key(key))
    }

    /// Wraps a verifying key.
    pub fn from_verifying_key(key: VerifyingKey) -> Self {
        let sec1 = key.to_encoded_point(false);
        let id = KeyId(Sha256::digest(sec1.as_bytes()).into());
        Self { key, id }
    }

    /// The uncompressed SEC1 encoding (65 bytes).
    pub fn to_sec1(&self) -> Vec<u8> {
        self.key.to_encoded_point(false).as_bytes().to_vec()
    }

    /// This key's id.
    pub fn key_id(&self) -> KeyId {
        self.id
    }

    /// Verifies an ES256 signature (64-byte r‖s) over `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        self.verify_digest(&Sha256::digest(message).into(), signature)
    }
}

impl PublicKey {
    /// Verifies an ES256 signature given the SHA-256 digest of the signed bytes.
    pub fn verify_digest(&self, digest: &[u8; 32], signature: &[u8]) -> bool {
        let Ok(sig) = Signature::from_slice(signature) else {
            return false;
        };
        // Only low-S signatures are accepted, so a signature has one valid form.
        if sig.normalize_s().is_some() {
            return false;
        }
        self.key.verify_prehash(digest, &sig).is_ok()
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({:?})", self.id)
    }
}

/// Why a signer could not sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("signer {key_id} failed: {reason}")]
pub struct SignError {
    /// The key that was asked to sign.
    pub key_id: KeyId,
    /// What the signing device reported.
    pub reason: String,
}

/// Something that can produce ES256 signatures: a software key at the hub, the TPM on a gateway.
pub trait Signer {
    /// The public half of the signing key.
    fn public_key(&self) -> PublicKey;
    /// Signs `message` (SHA-256 then ECDSA P-256), returning the 64-byte r‖s form with low S.
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError>;
}

/// A P-256 private key held in memory (hub keys, tests and the insecure development mode).
pub struct SoftwareKey {
    key: SigningKey,
    public: PublicKey,
}

impl SoftwareKey {
    /// Builds a key from its 32-byte secret scalar.
    pub fn from_bytes(secret: &[u8; 32]) -> Result<Self, EnvelopeError> {
        let key = SigningKey::from_bytes(secret.into()).map_err(|_| EnvelopeError::BadPublicKey)?;
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        Ok(Self { key, public })
    }

    /// Wraps an existing `p256` signing key.
    pub fn from_signing_key(key: SigningKey) -> Self {
        let public = PublicKey::from_verifying_key(*key.verifying_key());
        Self { key, public }
    }

    /// The 32-byte secret scalar (for writing the key to a protected file).
    pub fn to_bytes(&self) -> [u8; 32] {
        self.key.to_bytes().into()
    }
}

impl fmt::Debug for SoftwareKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SoftwareKey({:?})", self.public.id)
    }
}

impl Signer for SoftwareKey {
    fn public_key(&self) -> PublicKey {
        self.public.clone()
    }

    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        let sig: Signature = self.key.sign(message);
        let sig = sig.normalize_s().unwrap_or(sig);
        Ok(sig.to_bytes().into())
    }
}

/// What an envelope carries; bound into the protected header so one kind can't pass as another.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    /// A print job.
    Job,
    /// Hub trust-root metadata.
    TrustRoot,
    /// A policy (design space) bundle.
    Policy,
    /// A PAT model bundle.
    Model,
    /// A revocation list.
    Revocation,
    /// A hub receipt for ledger entries.
    Receipt,
    /// A ledger entry signed by a gateway.
    LedgerEntry,
    /// A ledger checkpoint signed by a gateway.
    Checkpoint,
}

impl ContentType {
    const ALL: [ContentType; 8] = [
        Self::Job,
        Self::TrustRoot,
        Self::Policy,
        Self::Model,
        Self::Revocation,
        Self::Receipt,
        Self::LedgerEntry,
        Self::Checkpoint,
    ];

    /// The media type written in the protected header.
    pub fn media_type(self) -> &'static str {
        match self {
            Self::Job => "application/vnd.dosegate.job+cbor",
            Self::TrustRoot => "application/vnd.dosegate.trust-root+cbor",
            Self::Policy => "application/vnd.dosegate.policy+cbor",
            Self::Model => "application/vnd.dosegate.model+cbor",
            Self::Revocation => "application/vnd.dosegate.revocation+cbor",
            Self::Receipt => "application/vnd.dosegate.receipt+cbor",
            Self::LedgerEntry => "application/vnd.dosegate.ledger-entry+cbor",
            Self::Checkpoint => "application/vnd.dosegate.checkpoint+cbor",
        }
    }

    fn from_media_type(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.media_type() == s)
    }
}

/// Why an envelope was refused. Each variant is a distinct, stable reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    /// Larger than the cap for this content type.
    #[error("envelope of {len} bytes exceeds the cap of {max} bytes")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// Not a tagged COSE_Sign1 in deterministic CBOR.
    #[error("not a well-formed COSE_Sign1: {reason}")]
    Malformed {
        /// What was wrong.
        reason: String,
    },
    /// The protected header does not name ES256.
    #[error("algorithm is not ES256")]
    WrongAlgorithm,
    /// The content type is missing or not the expected one.
    #[error("content type {found:?} where {expected:?} was expected")]
    WrongContentType {
        /// The expected type.
        expected: ContentType,
        /// What the header said.
        found: Option<String>,
    },
    /// The envelope carries no payload.
    #[error("envelope carries no payload")]
    NoPayload,
    /// There are no signatures at all.
    #[error("envelope is unsigned")]
    Unsigned,
    /// More signatures than [`MAX_SIGNATURES`].
    #[error("{count} signatures exceed the cap of {MAX_SIGNATURES}")]
    TooManySignatures {
        /// How many were present.
        count: usize,
    },
    /// A key of the role signed, but the signature does not verify over this content.
    #[error("signature by key {key_id} does not verify")]
    BadSignature {
        /// The key named by the signature.
        key_id: KeyId,
    },
    /// None of the signatures is by a key of the role.
    #[error("no signature by a key of this role (first signer {key_id:?})")]
    UnknownKey {
        /// The first signer's key id, if it named one.
        key_id: Option<KeyId>,
    },
    /// Valid signatures by distinct role keys are fewer than the role's threshold.
    #[error("{valid} valid signature(s) where the threshold is {threshold}")]
    BelowThreshold {
        /// Distinct role keys with a valid signature.
        valid: usize,
        /// The role's threshold.
        threshold: usize,
    },
    /// A public key could not be parsed.
    #[error("not a valid P-256 key")]
    BadPublicKey,
    /// A signer failed.
    #[error(transparent)]
    Sign(#[from] SignError),
}

/// The keys of one role and how many of them must sign.
#[derive(Debug, Clone)]
pub struct RoleKeys<'a> {
    /// The role's keys.
    pub keys: &'a [PublicKey],
    /// How many distinct keys must sign (at least 1).
    pub threshold: usize,
}

/// One signature found on an envelope, before verification.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignatureEntry {
    /// The signer's key id as written in its protected header.
    pub key_id: Option<KeyId>,
    /// SHA-256 of the bytes that were signed (the structure is hashed as it is encoded, so a
    /// multi-megabyte payload is never copied to be verified).
    digest: [u8; 32],
    /// The signature (r‖s).
    signature: Vec<u8>,
}

/// A decoded but not yet verified envelope.
#[derive(Debug, Clone)]
pub struct Envelope {
    content_type: ContentType,
    payload: Vec<u8>,
    signatures: Vec<SignatureEntry>,
}

/// An envelope whose signatures met a role's threshold. The only way to reach a checked payload.
#[derive(Debug, Clone)]
pub struct Verified {
    content_type: ContentType,
    payload: Vec<u8>,
    signers: BTreeSet<KeyId>,
}

impl Verified {
    /// The signed payload.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// Consumes the proof, returning the payload.
    pub fn into_payload(self) -> Vec<u8> {
        self.payload
    }

    /// The role keys whose signatures verified.
    pub fn signers(&self) -> &BTreeSet<KeyId> {
        &self.signers
    }

    /// What the envelope carries.
    pub fn content_type(&self) -> ContentType {
        self.content_type
    }
}

/// Feeds the CBOR head of a byte string (major type 2) of `len` bytes into `h`.
fn hash_bstr_head(h: &mut Sha256, len: usize) {
    let len = len as u64;
    if len < 24 {
        #[expect(clippy::cast_possible_truncation, reason = "len < 24")]
        h.update([0x40 | len as u8]);
    } else if let Ok(l) = u8::try_from(len) {
        h.update([0x58, l]);
    } else if let Ok(l) = u16::try_from(len) {
        h.update([0x59]);
        h.update(l.to_be_bytes());
    } else if let Ok(l) = u32::try_from(len) {
        h.update([0x5a]);
        h.update(l.to_be_bytes());
    } else {
        h.update([0x5b]);
        h.update(len.to_be_bytes());
    }
}

fn hash_bstr(h: &mut Sha256, bytes: &[u8]) {
    hash_bstr_head(h, bytes.len());
    h.update(bytes);
}

/// SHA-256 of `Sig_structure = ["Signature1", body_protected, h'', payload]` (RFC 9052 §4.4).
fn sign1_digest(body_protected: &[u8], payload: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x84, 0x6a]);
    h.update(b"Signature1");
    hash_bstr(&mut h, body_protected);
    h.update([0x40]);
    hash_bstr(&mut h, payload);
    h.finalize().into()
}

/// SHA-256 of the V2 full `Countersign_structure` (RFC 9338 §3.3) — the same bytes
/// [`countersign_tbs`] builds, hashed without building them.
fn countersign_digest(
    body_protected: &[u8],
    sign_protected: &[u8],
    payload: &[u8],
    body_signature: &[u8],
) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x86, 0x72]);
    h.update(COUNTERSIGN_CONTEXT.as_bytes());
    hash_bstr(&mut h, body_protected);
    hash_bstr(&mut h, sign_protected);
    h.update([0x40]);
    hash_bstr(&mut h, payload);
    h.update([0x81]);
    hash_bstr(&mut h, body_signature);
    h.finalize().into()
}

fn protected_header(kid: KeyId, content_type: Option<ContentType>) -> Header {
    let mut builder = HeaderBuilder::new()
        .algorithm(iana::Algorithm::ES256)
        .key_id(kid.as_bytes().to_vec());
    if let Some(ct) = content_type {
        builder = builder.content_type(ct.media_type().to_owned());
    }
    builder.build()
}

fn countersign_tbs(
    body_protected: &[u8],
    sign_protected: &[u8],
    payload: &[u8],
    body_signature: &[u8],
) -> Result<Vec<u8>, EnvelopeError> {
    let structure = Value::Array(vec![
        Value::Text(COUNTERSIGN_CONTEXT.to_owned()),
        Value::Bytes(body_protected.to_vec()),
        Value::Bytes(sign_protected.to_vec()),
        Value::Bytes(Vec::new()),
        Value::Bytes(payload.to_vec()),
        Value::Array(vec![Value::Bytes(body_signature.to_vec())]),
    ]);
    structure.to_vec().map_err(|e| EnvelopeError::Malformed {
        reason: e.to_string(),
    })
}

fn encoded_protected(header: &Header) -> Result<Vec<u8>, EnvelopeError> {
    let malformed = |e: coset::CoseError| EnvelopeError::Malformed {
        reason: e.to_string(),
    };
    header
        .clone()
        .to_cbor_value()
        .map_err(malformed)?
        .to_vec()
        .map_err(|e| EnvelopeError::Malformed {
            reason: e.to_string(),
        })
}

/// Signs `payload` as one `COSE_Sign1`: the first signer signs the body, each further signer adds
/// a full countersignature. Returns the tagged CBOR bytes.
pub fn sign(
    content_type: ContentType,
    payload: &[u8],
    signers: &[&dyn Signer],
) -> Result<Vec<u8>, EnvelopeError> {
    let Some((first, rest)) = signers.split_first() else {
        return Err(EnvelopeError::Unsigned);
    };
    if signers.len() > MAX_SIGNATURES {
        return Err(EnvelopeError::TooManySignatures {
            count: signers.len(),
        });
    }
    let protected = protected_header(first.public_key().key_id(), Some(content_type));
    let mut sign1 = CoseSign1Builder::new()
        .protected(protected)
        .payload(payload.to_vec())
        .try_create_signature(&[], |tbs| first.sign(tbs).map(|s| s.to_vec()))?
        .build();

    let body_protected = encoded_protected(&sign1.protected.header)?;
    let mut countersignatures = Vec::with_capacity(rest.len());
    for signer in rest {
        let header = protected_header(signer.public_key().key_id(), None);
        let sign_protected = encoded_protected(&header)?;
        let tbs = countersign_tbs(&body_protected, &sign_protected, payload, &sign1.signature)?;
        let signature = signer.sign(&tbs)?;
        countersignatures.push(Value::Array(vec![
            Value::Bytes(sign_protected),
            Value::Map(Vec::new()),
            Value::Bytes(signature.to_vec()),
        ]));
    }
    if !countersignatures.is_empty() {
        sign1.unprotected = Header {
            rest: vec![(
                Label::Int(COUNTERSIGNATURE_LABEL),
                Value::Array(countersignatures),
            )],
            ..Header::default()
        };
    }
    sign1.to_tagged_vec().map_err(|e| EnvelopeError::Malformed {
        reason: e.to_string(),
    })
}

fn header_kid(header: &Header) -> Option<KeyId> {
    KeyId::from_slice(&header.key_id)
}

fn is_es256(header: &Header) -> bool {
    header.alg
        == Some(coset::RegisteredLabelWithPrivate::Assigned(
            iana::Algorithm::ES256,
        ))
}

/// True when `sign1`, encoded again as a tagged `COSE_Sign1`, gives exactly `bytes` — the same
/// bytes `sign1.clone().to_tagged_vec()` would give, compared as they are produced: the headers
/// and the signature are encoded from small copies, the payload (which can be megabytes) is
/// compared in place and never copied.
fn reencodes_to(sign1: &CoseSign1, bytes: &[u8]) -> Result<bool, EnvelopeError> {
    let malformed = |reason: String| EnvelopeError::Malformed { reason };
    let protected = sign1
        .protected
        .clone()
        .cbor_bstr()
        .map_err(|e| malformed(e.to_string()))?;
    let unprotected = sign1
        .unprotected
        .clone()
        .to_cbor_value()
        .map_err(|e| malformed(e.to_string()))?;
    let mut cmp = cbor::Comparer::new(bytes);
    // Tag 18 (COSE_Sign1) and an array of four items, each then encoded in order: CBOR is the
    // concatenation of its items' encodings.
    let encoded = std::io::Write::write_all(&mut cmp, &[0xd2, 0x84]).is_ok()
        && ciborium::into_writer(&protected, &mut cmp).is_ok()
        && ciborium::into_writer(&unprotected, &mut cmp).is_ok()
        && match &sign1.payload {
            Some(p) => ciborium::into_writer(serde_bytes::Bytes::new(p), &mut cmp).is_ok(),
            None => ciborium::into_writer(&Value::Null, &mut cmp).is_ok(),
        }
        && ciborium::into_writer(serde_bytes::Bytes::new(&sign1.signature), &mut cmp).is_ok();
    Ok(encoded && cmp.matched_all())
}

/// Decodes a tagged `COSE_Sign1` of the expected content type without checking signatures.
pub fn decode(bytes: &[u8], expected: ContentType, max: usize) -> Result<Envelope, EnvelopeError> {
    if bytes.len() > max {
        return Err(EnvelopeError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let malformed = |reason: String| EnvelopeError::Malformed { reason };
    let mut sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|e| malformed(e.to_string()))?;
    if !reencodes_to(&sign1, bytes)? {
        return Err(malformed("not in deterministic encoding".into()));
    }
    let header = &sign1.protected.header;
    if !is_es256(header) {
        return Err(EnvelopeError::WrongAlgorithm);
    }
    let found = match &header.content_type {
        Some(coset::ContentType::Text(t)) => Some(t.clone()),
        Some(coset::ContentType::Assigned(a)) => Some(format!("{a:?}")),
        None => None,
    };
    if found.as_deref().and_then(ContentType::from_media_type) != Some(expected) {
        return Err(EnvelopeError::WrongContentType { expected, found });
    }
    if !header.crit.is_empty() {
        return Err(malformed("critical headers are not supported".into()));
    }
    let Some(payload) = sign1.payload.take() else {
        return Err(EnvelopeError::NoPayload);
    };
    let body_protected = sign1.protected.original_data.clone().unwrap_or_default();

    let mut signatures = Vec::new();
    if !sign1.signature.is_empty() {
        signatures.push(SignatureEntry {
            key_id: header_kid(header),
            digest: sign1_digest(&body_protected, &payload),
            signature: sign1.signature.clone(),
        });
    }
    let u = &sign1.unprotected;
    if u.alg.is_some() || !u.key_id.is_empty() || u.content_type.is_some() {
        return Err(malformed(
            "security-relevant header outside the protected map".into(),
        ));
    }
    for (label, value) in &u.rest {
        if *label != Label::Int(COUNTERSIGNATURE_LABEL) {
            return Err(malformed(format!(
                "unexpected unprotected header {label:?}"
            )));
        }
        let Value::Array(list) = value else {
            return Err(malformed("countersignatures are not an array".into()));
        };
        if list.len() + signatures.len() > MAX_SIGNATURES {
            return Err(EnvelopeError::TooManySignatures {
                count: list.len() + signatures.len(),
            });
        }
        for item in list {
            signatures.push(decode_countersignature(
                item,
                &body_protected,
                &payload,
                &sign1.signature,
            )?);
        }
    }
    Ok(Envelope {
        content_type: expected,
        payload,
        signatures,
    })
}

fn decode_countersignature(
    item: &Value,
    body_protected: &[u8],
    payload: &[u8],
    body_signature: &[u8],
) -> Result<SignatureEntry, EnvelopeError> {
    let malformed = |reason: &str| EnvelopeError::Malformed {
        reason: format!("countersignature: {reason}"),
    };
    let Value::Array(parts) = item else {
        return Err(malformed("not an array"));
    };
    let [
        Value::Bytes(sign_protected),
        Value::Map(unprotected),
        Value::Bytes(signature),
    ] = parts.as_slice()
    else {
        return Err(malformed("not [protected, unprotected, signature]"));
    };
    if !unprotected.is_empty() {
        return Err(malformed("unprotected header must be empty"));
    }
    let header = Header::from_slice(sign_protected).map_err(|_| malformed("bad header"))?;
    if !is_es256(&header) {
        return Err(EnvelopeError::WrongAlgorithm);
    }
    if encoded_protected(&header)? != *sign_protected {
        return Err(malformed("header not in deterministic encoding"));
    }
    Ok(SignatureEntry {
        key_id: header_kid(&header),
        digest: countersign_digest(body_protected, sign_protected, payload, body_signature),
        signature: signature.clone(),
    })
}

impl Envelope {
    /// The payload, unverified. Only for display and diagnostics (`inspect` commands).
    pub fn unverified_payload(&self) -> &[u8] {
        &self.payload
    }

    /// The key ids that signed, in order, unverified.
    pub fn signer_ids(&self) -> Vec<Option<KeyId>> {
        self.signatures.iter().map(|s| s.key_id).collect()
    }

    /// Checks the signatures against a role: every signature by a key of the role must verify,
    /// and at least `threshold` distinct role keys must have signed. Signatures by keys outside
    /// the role are ignored (they may belong to another role of the same hub).
    pub fn verify(self, role: &RoleKeys<'_>) -> Result<Verified, EnvelopeError> {
        if self.signatures.is_empty() {
            return Err(EnvelopeError::Unsigned);
        }
        let mut signers = BTreeSet::new();
        for entry in &self.signatures {
            let Some(kid) = entry.key_id else { continue };
            let Some(key) = role.keys.iter().find(|k| k.key_id() == kid) else {
                continue;
            };
            if !key.verify_digest(&entry.digest, &entry.signature) {
                return Err(EnvelopeError::BadSignature { key_id: kid });
            }
            signers.insert(kid);
        }
        if signers.is_empty() {
            return Err(EnvelopeError::UnknownKey {
                key_id: self.signatures.first().and_then(|s| s.key_id),
            });
        }
        let threshold = role.threshold.max(1);
        if signers.len() < threshold {
            return Err(EnvelopeError::BelowThreshold {
                valid: signers.len(),
                threshold,
            });
        }
        Ok(Verified {
            content_type: self.content_type,
            payload: self.payload,
            signers,
        })
    }
}

#[cfg(test)]
mod tests;

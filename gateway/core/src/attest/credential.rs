//! Credential activation, the hub's side: checking an attestation key's public area and
//! `TPM2_MakeCredential` in software.
//!
//! At enrollment the hub learns the gateway's EK (ECC P-256) and its AK's public area. It checks
//! that the AK is a restricted, fixed, TPM-generated ECDSA P-256 signing key ([`check_ak_public`]),
//! then wraps a random credential to the EK, bound to the AK's *name*
//! ([`make_credential`]): only the TPM holding that EK, with that AK loaded, can recover it with
//! `TPM2_ActivateCredential`. The hub compares the returned credential with what it wrapped
//! ([`check_activation`]) before pinning the AK. The construction is TPM 2.0 Part 1 §24 (ECDH +
//! KDFe seed, KDFa keys, AES-128-CFB, HMAC-SHA-256). Randomness (the ephemeral scalar) is an input;
//! this module does no I/O.

use aes::cipher::{AsyncStreamCipher as _, KeyIvInit as _};
use hmac::{Hmac, Mac as _};
use p256::elliptic_curve::sec1::ToEncodedPoint as _;
use sha2::{Digest as _, Sha256};

use crate::envelope::PublicKey;

/// Largest TPMT_PUBLIC accepted.
pub const MAX_PUBLIC_LEN: usize = 1024;
/// Largest credential (a TPM2B_DIGEST of the name algorithm: 32 bytes).
pub const MAX_CREDENTIAL_LEN: usize = 32;

const ALG_ECC: u16 = 0x0023;
const ALG_SHA256: u16 = 0x000b;
const ALG_NULL: u16 = 0x0010;
const ALG_ECDSA: u16 = 0x0018;
const CURVE_P256: u16 = 0x0003;
const ATTR_FIXED_TPM: u32 = 1 << 1;
const ATTR_FIXED_PARENT: u32 = 1 << 4;
const ATTR_SENSITIVE_DATA_ORIGIN: u32 = 1 << 5;
const ATTR_RESTRICTED: u32 = 1 << 16;
const ATTR_DECRYPT: u32 = 1 << 17;
const ATTR_SIGN: u32 = 1 << 18;

/// Why an AK or an activation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CredentialError {
    /// The public area is not a well-formed TPMT_PUBLIC.
    #[error("public area malformed at byte {offset}")]
    Malformed {
        /// Where parsing failed.
        offset: usize,
    },
    /// The public area is larger than [`MAX_PUBLIC_LEN`].
    #[error("public area of {len} bytes exceeds the cap")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// Not an ECC P-256 key with SHA-256 name and ECDSA-SHA-256 scheme.
    #[error(
        "AK is not ECDSA P-256 / SHA-256 (type {kind:#06x}, curve {curve:#06x}, scheme {scheme:#06x})"
    )]
    WrongAlgorithm {
        /// Key type.
        kind: u16,
        /// Curve.
        curve: u16,
        /// Signing scheme.
        scheme: u16,
    },
    /// Attribute bits that an attestation key must (not) have.
    #[error(
        "AK attributes {attributes:#010x} lack restricted/sign/fixedTPM/fixedParent/sensitiveDataOrigin or set decrypt"
    )]
    WrongAttributes {
        /// The attributes found.
        attributes: u32,
    },
    /// The public area's key is not the AK the gateway declared.
    #[error("the public area holds another key than the declared AK")]
    KeyMismatch,
    /// The EK or a point is not a valid P-256 key.
    #[error("invalid P-256 key")]
    BadKey,
    /// The credential is empty or longer than [`MAX_CREDENTIAL_LEN`].
    #[error("credential of {len} bytes (1–{MAX_CREDENTIAL_LEN} allowed)")]
    BadCredential {
        /// Its length.
        len: usize,
    },
    /// The gateway returned another credential than the one wrapped: it does not hold the EK, or
    /// the AK is not resident in that TPM.
    #[error("credential activation failed: the returned secret does not match")]
    ActivationMismatch,
}

/// An AK whose public area passed the checks: its name and key. Private fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckedAk {
    name: Vec<u8>,
    key: PublicKey,
}

impl CheckedAk {
    /// The TPM name: `nameAlg ‖ SHA-256(TPMT_PUBLIC)`.
    pub fn name(&self) -> &[u8] {
        &self.name
    }
    /// The key.
    pub fn key(&self) -> &PublicKey {
        &self.key
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], CredentialError> {
        let malformed = CredentialError::Malformed {
            offset: self.offset,
        };
        let end = self.offset.checked_add(n).ok_or(malformed.clone())?;
        let out = self.bytes.get(self.offset..end).ok_or(malformed)?;
        self.offset = end;
        Ok(out)
    }
    fn u16(&mut self) -> Result<u16, CredentialError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([
            *b.first().unwrap_or(&0),
            *b.get(1).unwrap_or(&0),
        ]))
    }
    fn u32(&mut self) -> Result<u32, CredentialError> {
        Ok((u32::from(self.u16()?) << 16) | u32::from(self.u16()?))
    }
    fn sized(&mut self) -> Result<&'a [u8], CredentialError> {
        let n = self.u16()?;
        self.take(usize::from(n))
    }
}

/// Checks an AK's marshalled `TPMT_PUBLIC` against the key the gateway declared: ECDSA P-256 with
/// SHA-256, restricted signing, fixedTPM, fixedParent, sensitiveDataOrigin, no decrypt.
pub fn check_ak_public(
    public_area: &[u8],
    declared: &PublicKey,
) -> Result<CheckedAk, CredentialError> {
    if public_area.len() > MAX_PUBLIC_LEN {
        return Err(CredentialError::TooLarge {
            len: public_area.len(),
        });
    }
    let mut r = Reader {
        bytes: public_area,
        offset: 0,
    };
    let kind = r.u16()?;
    let name_alg = r.u16()?;
    let attributes = r.u32()?;
    let _auth_policy = r.sized()?;
    let sym = r.u16()?;
    if sym != ALG_NULL {
        r.take(4)?; // keyBits, mode
    }
    let scheme = r.u16()?;
    let scheme_hash = if scheme == ALG_NULL {
        ALG_NULL
    } else {
        r.u16()?
    };
    let curve = r.u16()?;
    let kdf = r.u16()?;
    if kdf != ALG_NULL {
        r.take(2)?;
    }
    let x = r.sized()?;
    let y = r.sized()?;
    if r.offset != public_area.len() {
        return Err(CredentialError::Malformed { offset: r.offset });
    }
    if kind != ALG_ECC
        || name_alg != ALG_SHA256
        || curve != CURVE_P256
        || scheme != ALG_ECDSA
        || scheme_hash != ALG_SHA256
    {
        return Err(CredentialError::WrongAlgorithm {
            kind,
            curve,
            scheme,
        });
    }
    let required = ATTR_FIXED_TPM
        | ATTR_FIXED_PARENT
        | ATTR_SENSITIVE_DATA_ORIGIN
        | ATTR_RESTRICTED
        | ATTR_SIGN;
    if attributes & required != required || attributes & ATTR_DECRYPT != 0 {
        return Err(CredentialError::WrongAttributes { attributes });
    }
    if x.len() > 32 || y.len() > 32 {
        return Err(CredentialError::BadKey);
    }
    let mut sec1 = vec![4u8];
    sec1.extend(std::iter::repeat_n(0, 32 - x.len()));
    sec1.extend_from_slice(x);
    sec1.extend(std::iter::repeat_n(0, 32 - y.len()));
    sec1.extend_from_slice(y);
    let key = PublicKey::from_sec1(&sec1).map_err(|_| CredentialError::BadKey)?;
    if key != *declared {
        return Err(CredentialError::KeyMismatch);
    }
    let mut name = ALG_SHA256.to_be_bytes().to_vec();
    name.extend_from_slice(&Sha256::digest(public_area));
    Ok(CheckedAk { name, key })
}

/// What the hub sends for `TPM2_ActivateCredential` (contents of the TPM2B structures).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialChallenge {
    /// `TPM2B_ID_OBJECT` contents: `integrityHMAC (TPM2B) ‖ encIdentity`.
    pub id_object: Vec<u8>,
    /// `TPM2B_ENCRYPTED_SECRET` contents: the ephemeral point as `TPMS_ECC_POINT`.
    pub encrypted_secret: Vec<u8>,
}

type HmacSha256 = Hmac<Sha256>;

/// KDFa (SP 800-108 counter mode with HMAC-SHA-256), TPM 2.0 Part 1 §11.4.10.2.
fn kdfa(key: &[u8], label: &str, context_u: &[u8], context_v: &[u8], bits: u32) -> Vec<u8> {
    let bytes = usize::try_from(bits / 8).unwrap_or(0);
    let mut out = Vec::with_capacity(bytes + 32);
    let mut counter: u32 = 1;
    while out.len() < bytes {
        // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
        let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
            return Vec::new();
        };
        mac.update(&counter.to_be_bytes());
        mac.update(label.as_bytes());
        mac.update(&[0]);
        mac.update(context_u);
        mac.update(context_v);
        mac.update(&bits.to_be_bytes());
        out.extend_from_slice(&mac.finalize().into_bytes());
        counter += 1;
    }
    out.truncate(bytes);
    out
}

/// KDFe for ECDH (SP 800-56A concatenation KDF), TPM 2.0 Part 1 §11.4.10.3; one SHA-256 block.
fn kdfe(z: &[u8], label: &str, party_u: &[u8], party_v: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(1u32.to_be_bytes());
    h.update(z);
    h.update(label.as_bytes());
    h.update([0]);
    h.update(party_u);
    h.update(party_v);
    h.finalize().into()
}

fn push_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&u16::try_from(bytes.len()).unwrap_or(0).to_be_bytes());
    out.extend_from_slice(bytes);
}

/// `TPM2_MakeCredential` in software for an ECC P-256 EK whose template uses SHA-256 and
/// AES-128-CFB (the TCG default ECC EK). `ephemeral` is a fresh random 32-byte scalar.
pub fn make_credential(
    ek: &PublicKey,
    ak_name: &[u8],
    credential: &[u8],
    ephemeral: &[u8; 32],
) -> Result<CredentialChallenge, CredentialError> {
    if credential.is_empty() || credential.len() > MAX_CREDENTIAL_LEN {
        return Err(CredentialError::BadCredential {
            len: credential.len(),
        });
    }
    let ek_point =
        p256::PublicKey::from_sec1_bytes(&ek.to_sec1()).map_err(|_| CredentialError::BadKey)?;
    let secret = p256::SecretKey::from_slice(ephemeral).map_err(|_| CredentialError::BadKey)?;
    let shared = p256::ecdh::diffie_hellman(secret.to_nonzero_scalar(), ek_point.as_affine());
    let eph_public = secret.public_key().to_encoded_point(false);
    let ek_encoded = ek_point.to_encoded_point(false);
    let (Some(eph_x), Some(eph_y), Some(ek_x)) = (eph_public.x(), eph_public.y(), ek_encoded.x())
    else {
        return Err(CredentialError::BadKey);
    };
    let seed = kdfe(shared.raw_secret_bytes(), "IDENTITY", eph_x, ek_x);

    let sym_key = kdfa(&seed, "STORAGE", ak_name, &[], 128);
    let mut enc_identity = Vec::new();
    push_sized(&mut enc_identity, credential);
    cfb_mode::Encryptor::<aes::Aes128>::new_from_slices(&sym_key, &[0u8; 16])
        .map_err(|_| CredentialError::BadKey)?
        .encrypt(&mut enc_identity);

    let hmac_key = kdfa(&seed, "INTEGRITY", &[], &[], 256);
    let mut mac = HmacSha256::new_from_slice(&hmac_key).map_err(|_| CredentialError::BadKey)?;
    mac.update(&enc_identity);
    mac.update(ak_name);
    let integrity = mac.finalize().into_bytes();

    let mut id_object = Vec::new();
    push_sized(&mut id_object, &integrity);
    id_object.extend_from_slice(&enc_identity);
    let mut encrypted_secret = Vec::new();
    push_sized(&mut encrypted_secret, eph_x);
    push_sized(&mut encrypted_secret, eph_y);
    Ok(CredentialChallenge {
        id_object,
        encrypted_secret,
    })
}

/// Compares the credential the gateway's TPM recovered with the one the hub wrapped, in constant
/// time.
pub fn check_activation(expected: &[u8], returned: &[u8]) -> Result<(), CredentialError> {
    let same_len = expected.len() == returned.len();
    let diff = expected
        .iter()
        .zip(returned)
        .fold(0u8, |acc, (a, b)| acc | (a ^ b));
    if same_len && diff == 0 {
        Ok(())
    } else {
        Err(CredentialError::ActivationMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Signer as _, SoftwareKey};

    fn ak_public_area(key: &PublicKey, attributes: u32) -> Vec<u8> {
        let sec1 = key.to_sec1();
        let mut out = Vec::new();
        out.extend_from_slice(&ALG_ECC.to_be_bytes());
        out.extend_from_slice(&ALG_SHA256.to_be_bytes());
        out.extend_from_slice(&attributes.to_be_bytes());
        push_sized(&mut out, &[]);
        out.extend_from_slice(&ALG_NULL.to_be_bytes());
        out.extend_from_slice(&ALG_ECDSA.to_be_bytes());
        out.extend_from_slice(&ALG_SHA256.to_be_bytes());
        out.extend_from_slice(&CURVE_P256.to_be_bytes());
        out.extend_from_slice(&ALG_NULL.to_be_bytes());
        push_sized(&mut out, &sec1[1..33]);
        push_sized(&mut out, &sec1[33..]);
        out
    }

    const AK_ATTRS: u32 = ATTR_FIXED_TPM
        | ATTR_FIXED_PARENT
        | ATTR_SENSITIVE_DATA_ORIGIN
        | (1 << 6) // userWithAuth
        | ATTR_RESTRICTED
        | ATTR_SIGN;

    #[test]
    fn accepts_a_restricted_fixed_ak_and_names_it() {
        let ak = SoftwareKey::from_bytes(&[5; 32]).unwrap().public_key();
        let area = ak_public_area(&ak, AK_ATTRS);
        let checked = check_ak_public(&area, &ak).unwrap();
        assert_eq!(&checked.name()[..2], &[0x00, 0x0b]);
        assert_eq!(checked.name()[2..], Sha256::digest(&area)[..]);
    }

    #[test]
    fn refuses_an_unrestricted_or_exportable_key_as_ak() {
        let ak = SoftwareKey::from_bytes(&[5; 32]).unwrap().public_key();
        for attrs in [
            AK_ATTRS & !ATTR_RESTRICTED,
            AK_ATTRS & !ATTR_FIXED_TPM,
            AK_ATTRS | ATTR_DECRYPT,
        ] {
            assert!(matches!(
                check_ak_public(&ak_public_area(&ak, attrs), &ak),
                Err(CredentialError::WrongAttributes { .. })
            ));
        }
        let other = SoftwareKey::from_bytes(&[6; 32]).unwrap().public_key();
        assert_eq!(
            check_ak_public(&ak_public_area(&ak, AK_ATTRS), &other),
            Err(CredentialError::KeyMismatch)
        );
    }

    #[test]
    fn kdfa_matches_a_known_answer() {
        // Recomputed by hand from the definition: one HMAC-SHA-256 block, truncated to 16 bytes.
        let key = [0x11u8; 32];
        let mut mac = HmacSha256::new_from_slice(&key).unwrap();
        mac.update(&[0, 0, 0, 1]);
        mac.update(b"STORAGE\0");
        mac.update(b"name");
        mac.update(&128u32.to_be_bytes());
        let block = mac.finalize().into_bytes();
        assert_eq!(
            kdfa(&key, "STORAGE", b"name", &[], 128),
            block[..16].to_vec()
        );
    }

    /// The TPM's side, re-implemented from the specification, to show the wrapping round-trips:
    /// ECDH with the EK's private key, same KDFs, HMAC check, then decryption.
    #[test]
    fn challenge_opens_only_with_the_ek_and_the_right_ak_name() {
        let ek_secret = p256::SecretKey::from_slice(&[9; 32]).unwrap();
        let ek = PublicKey::from_sec1(ek_secret.public_key().to_encoded_point(false).as_bytes())
            .unwrap();
        let ak_name = b"\x00\x0bAK-NAME-DIGEST-0123456789abcdef0123";
        let ch = make_credential(&ek, ak_name, b"hub secret 123", &[3; 32]).unwrap();

        let open = |name: &[u8]| -> Option<Vec<u8>> {
            let mut r = Reader {
                bytes: &ch.encrypted_secret,
                offset: 0,
            };
            let (x, y) = (r.sized().ok()?, r.sized().ok()?);
            let mut sec1 = vec![4];
            sec1.extend_from_slice(x);
            sec1.extend_from_slice(y);
            let eph = p256::PublicKey::from_sec1_bytes(&sec1).ok()?;
            let shared = p256::ecdh::diffie_hellman(ek_secret.to_nonzero_scalar(), eph.as_affine());
            let ek_x = ek_secret.public_key().to_encoded_point(false);
            let seed = kdfe(shared.raw_secret_bytes(), "IDENTITY", x, ek_x.x()?);
            let mut r = Reader {
                bytes: &ch.id_object,
                offset: 0,
            };
            let integrity = r.sized().ok()?.to_vec();
            let mut enc = ch.id_object[r.offset..].to_vec();
            let mut mac =
                HmacSha256::new_from_slice(&kdfa(&seed, "INTEGRITY", &[], &[], 256)).ok()?;
            mac.update(&enc);
            mac.update(name);
            mac.verify_slice(&integrity).ok()?;
            cfb_mode::Decryptor::<aes::Aes128>::new_from_slices(
                &kdfa(&seed, "STORAGE", name, &[], 128),
                &[0; 16],
            )
            .ok()?
            .decrypt(&mut enc);
            Some(enc[2..].to_vec())
        };
        assert_eq!(open(ak_name).as_deref(), Some(&b"hub secret 123"[..]));
        assert_eq!(open(b"\x00\x0bANOTHER-AK"), None);
        assert_eq!(
            check_activation(b"hub secret 123", b"hub secret 123"),
            Ok(())
        );
        assert_eq!(
            check_activation(b"hub secret 123", b"hub secret 124"),
            Err(CredentialError::ActivationMismatch)
        );
        let _ = SoftwareKey::from_bytes(&[1; 32]).unwrap().public_key();
    }
}

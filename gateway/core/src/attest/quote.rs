//! TPM quotes: parsing a marshalled `TPMS_ATTEST` and checking it against an attestation key.
//!
//! A quote is the TPM's signature, by a restricted attestation key (AK), over a `TPMS_ATTEST`
//! structure that starts with the `TPM_GENERATED` magic (so `TPM2_Sign` cannot forge one), and
//! carries the verifier's qualifying data (a nonce, or the ledger's chain head), the TPM clock, and
//! a digest of the selected PCRs. [`verify_quote`] checks all of that and returns an
//! [`AttestedQuote`], the proof type downstream code accepts. Parsing is over bytes with a size
//! cap; this module does no I/O.

use p256::ecdsa::Signature;
use sha2::{Digest, Sha256};

use crate::envelope::PublicKey;

/// Largest marshalled `TPMS_ATTEST` accepted (real quotes are ~150 bytes).
pub const MAX_ATTEST_LEN: usize = 1024;
/// `TPM_GENERATED_VALUE`.
const TPM_GENERATED: u32 = 0xff54_4347;
/// `TPM_ST_ATTEST_QUOTE`.
const ST_ATTEST_QUOTE: u16 = 0x8018;
/// `TPM_ALG_SHA256`.
pub const ALG_SHA256: u16 = 0x000b;
/// Most PCR banks a selection may list.
const MAX_BANKS: u32 = 16;

/// Why a quote was refused. Variants carry what was found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QuoteError {
    /// The attestation structure exceeds [`MAX_ATTEST_LEN`].
    #[error("attestation of {len} bytes exceeds the cap of {MAX_ATTEST_LEN}")]
    TooLarge {
        /// Its length.
        len: usize,
    },
    /// The bytes end before the structure does.
    #[error("attestation truncated at byte {offset}")]
    Truncated {
        /// Where more bytes were needed.
        offset: usize,
    },
    /// Bytes follow the structure.
    #[error("{extra} trailing bytes after the attestation")]
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The magic is not `TPM_GENERATED`: the TPM did not produce this structure.
    #[error("magic {found:#010x} is not TPM_GENERATED")]
    NotTpmGenerated {
        /// The magic found.
        found: u32,
    },
    /// The structure is not a quote.
    #[error("attestation type {found:#06x} is not a quote")]
    NotAQuote {
        /// The type found.
        found: u16,
    },
    /// A PCR selection is malformed (too many banks, select bitmap larger than 4 bytes).
    #[error("malformed PCR selection")]
    BadSelection,
    /// The signature is not 64 bytes of r‖s or does not verify under the attestation key.
    #[error("quote signature does not verify under the attestation key")]
    BadSignature,
    /// The qualifying data is not the expected nonce or chain head.
    #[error(
        "qualifying data {} is not the expected {}",
        hex::encode(found),
        hex::encode(expected)
    )]
    WrongQualifyingData {
        /// Expected bytes.
        expected: Vec<u8>,
        /// Bytes in the quote.
        found: Vec<u8>,
    },
    /// The quote selects other PCRs than the expected ones.
    #[error("quote selects {found:?}, expected {expected:?}")]
    WrongSelection {
        /// The expected selection.
        expected: Vec<PcrSelection>,
        /// The quote's selection.
        found: Vec<PcrSelection>,
    },
    /// The PCR digest does not match the expected PCR values.
    #[error(
        "PCR digest {} does not match the expected PCR values ({})",
        hex::encode(found),
        hex::encode(expected)
    )]
    PcrMismatch {
        /// Digest of the expected PCR values.
        expected: Vec<u8>,
        /// Digest in the quote.
        found: Vec<u8>,
    },
}

/// PCRs selected in one bank.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PcrSelection {
    /// The bank's hash algorithm (`TPM_ALG_ID`).
    pub hash: u16,
    /// The selected PCR indices, ascending.
    pub pcrs: Vec<u8>,
}

/// `TPMS_CLOCK_INFO`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ClockInfo {
    /// Milliseconds the TPM has been powered since its clock was last set.
    pub clock: u64,
    /// TPM resets (power cycles) so far.
    pub reset_count: u32,
    /// TPM restarts (resume from hibernate) since the last reset.
    pub restart_count: u32,
    /// Whether the clock value is guaranteed not to have gone back.
    pub safe: bool,
}

/// The fields of a parsed quote (`TPMS_ATTEST` with `TPMS_QUOTE_INFO`), not yet verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuoteInfo {
    /// The signer's qualified name.
    pub qualified_signer: Vec<u8>,
    /// The qualifying data (nonce) the quote was asked for.
    pub extra_data: Vec<u8>,
    /// The TPM clock.
    pub clock: ClockInfo,
    /// TPM firmware version.
    pub firmware_version: u64,
    /// Which PCRs are covered.
    pub selection: Vec<PcrSelection>,
    /// Hash of the selected PCR values, concatenated in selection order.
    pub pcr_digest: Vec<u8>,
}

/// A quote whose signature, qualifying data and PCR digest verified. Private fields: the only
/// way to obtain one is [`verify_quote`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedQuote {
    info: QuoteInfo,
}

impl AttestedQuote {
    /// The verified quote's fields.
    pub fn info(&self) -> &QuoteInfo {
        &self.info
    }
}

struct Reader<'a> {
    bytes: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], QuoteError> {
        let end = self.offset.checked_add(n).ok_or(QuoteError::Truncated {
            offset: self.offset,
        })?;
        let out = self
            .bytes
            .get(self.offset..end)
            .ok_or(QuoteError::Truncated {
                offset: self.offset,
            })?;
        self.offset = end;
        Ok(out)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], QuoteError> {
        let offset = self.offset;
        self.take(N)?
            .try_into()
            .map_err(|_| QuoteError::Truncated { offset })
    }

    fn u8(&mut self) -> Result<u8, QuoteError> {
        Ok(u8::from_be_bytes(self.array()?))
    }

    fn u16(&mut self) -> Result<u16, QuoteError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, QuoteError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, QuoteError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    fn sized(&mut self) -> Result<Vec<u8>, QuoteError> {
        let len = self.u16()?;
        Ok(self.take(usize::from(len))?.to_vec())
    }
}

/// Parses a marshalled `TPMS_ATTEST` that must be a quote.
pub fn parse_attest(bytes: &[u8]) -> Result<QuoteInfo, QuoteError> {
    if bytes.len() > MAX_ATTEST_LEN {
        return Err(QuoteError::TooLarge { len: bytes.len() });
    }
    let mut r = Reader { bytes, offset: 0 };
    let magic = r.u32()?;
    if magic != TPM_GENERATED {
        return Err(QuoteError::NotTpmGenerated { found: magic });
    }
    let kind = r.u16()?;
    if kind != ST_ATTEST_QUOTE {
        return Err(QuoteError::NotAQuote { found: kind });
    }
    let qualified_signer = r.sized()?;
    let extra_data = r.sized()?;
    let clock = ClockInfo {
        clock: r.u64()?,
        reset_count: r.u32()?,
        restart_count: r.u32()?,
        safe: r.u8()? != 0,
    };
    let firmware_version = r.u64()?;
    let banks = r.u32()?;
    if banks > MAX_BANKS {
        return Err(QuoteError::BadSelection);
    }
    let mut selection = Vec::new();
    for _ in 0..banks {
        let hash = r.u16()?;
        let size = r.u8()?;
        if size > 4 {
            return Err(QuoteError::BadSelection);
        }
        let bitmap = r.take(usize::from(size))?;
        let mut pcrs = Vec::new();
        for (byte_index, byte) in (0u8..).zip(bitmap) {
            for bit in 0..8u8 {
                if byte & (1 << bit) != 0 {
                    pcrs.push(byte_index * 8 + bit);
                }
            }
        }
        selection.push(PcrSelection { hash, pcrs });
    }
    let pcr_digest = r.sized()?;
    let extra = bytes.len().saturating_sub(r.offset);
    if extra != 0 {
        return Err(QuoteError::TrailingBytes { extra });
    }
    Ok(QuoteInfo {
        qualified_signer,
        extra_data,
        clock,
        firmware_version,
        selection,
        pcr_digest,
    })
}

/// What a quote must show.
#[derive(Debug, Clone)]
pub struct QuoteExpectation<'a> {
    /// The qualifying data the verifier asked for (nonce, or chain head).
    pub qualifying_data: &'a [u8],
    /// The exact PCR selection expected.
    pub selection: &'a [PcrSelection],
    /// The expected values of the selected PCRs, in selection order (SHA-256 banks).
    pub pcr_values: &'a [[u8; 32]],
}

/// Digest of PCR values as a quote computes it: SHA-256 over their concatenation.
pub fn pcr_digest(values: &[[u8; 32]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for v in values {
        h.update(v);
    }
    h.finalize().into()
}

/// Verifies a quote: the AK's ECDSA P-256 signature over SHA-256 of the marshalled attestation
/// (`signature` is 64 bytes r‖s; a TPM may return high-S, which is normalised here), the
/// `TPM_GENERATED` magic and quote type, the qualifying data, the PCR selection and digest.
pub fn verify_quote(
    attest: &[u8],
    signature: &[u8],
    ak: &PublicKey,
    expected: &QuoteExpectation<'_>,
) -> Result<AttestedQuote, QuoteError> {
    let info = parse_attest(attest)?;
    let sig = Signature::from_slice(signature).map_err(|_| QuoteError::BadSignature)?;
    let sig = sig.normalize_s().unwrap_or(sig);
    if !ak.verify(attest, &sig.to_bytes()) {
        return Err(QuoteError::BadSignature);
    }
    if info.extra_data != expected.qualifying_data {
        return Err(QuoteError::WrongQualifyingData {
            expected: expected.qualifying_data.to_vec(),
            found: info.extra_data,
        });
    }
    if info.selection != expected.selection {
        return Err(QuoteError::WrongSelection {
            expected: expected.selection.to_vec(),
            found: info.selection,
        });
    }
    let want = pcr_digest(expected.pcr_values);
    if info.pcr_digest != want {
        return Err(QuoteError::PcrMismatch {
            expected: want.to_vec(),
            found: info.pcr_digest,
        });
    }
    Ok(AttestedQuote { info })
}

/// Marshals a quote structure the way a TPM does. Used to build test vectors and by fuzzing; a
/// real quote always comes from the TPM.
pub fn marshal_attest(info: &QuoteInfo) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(&TPM_GENERATED.to_be_bytes());
    out.extend_from_slice(&ST_ATTEST_QUOTE.to_be_bytes());
    push_sized(&mut out, &info.qualified_signer);
    push_sized(&mut out, &info.extra_data);
    out.extend_from_slice(&info.clock.clock.to_be_bytes());
    out.extend_from_slice(&info.clock.reset_count.to_be_bytes());
    out.extend_from_slice(&info.clock.restart_count.to_be_bytes());
    out.push(u8::from(info.clock.safe));
    out.extend_from_slice(&info.firmware_version.to_be_bytes());
    out.extend_from_slice(
        &u32::try_from(info.selection.len())
            .unwrap_or(0)
            .to_be_bytes(),
    );
    for sel in &info.selection {
        out.extend_from_slice(&sel.hash.to_be_bytes());
        // A TPM emits at least 3 bytes (PCRs 0–23); PCRs 24–31 need a fourth.
        let mut bitmap = [0u8; 4];
        for &p in &sel.pcrs {
            if let Some(b) = bitmap.get_mut(usize::from(p / 8)) {
                *b |= 1 << (p % 8);
            }
        }
        let size = if sel.pcrs.iter().any(|&p| p >= 24) {
            4
        } else {
            3
        };
        out.push(size);
        out.extend_from_slice(bitmap.get(..usize::from(size)).unwrap_or(&bitmap));
    }
    push_sized(&mut out, &info.pcr_digest);
    out
}

fn push_sized(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = u16::try_from(bytes.len()).unwrap_or(u16::MAX);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(bytes.get(..usize::from(len)).unwrap_or(bytes));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::{Signer, SoftwareKey};

    fn ak() -> SoftwareKey {
        SoftwareKey::from_bytes(&[7; 32]).unwrap()
    }

    fn sample(nonce: &[u8], pcr: [u8; 32]) -> QuoteInfo {
        QuoteInfo {
            qualified_signer: vec![0, 0x0b, 1, 2, 3],
            extra_data: nonce.to_vec(),
            clock: ClockInfo {
                clock: 1234,
                reset_count: 1,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 42,
            selection: vec![PcrSelection {
                hash: ALG_SHA256,
                pcrs: vec![16],
            }],
            pcr_digest: pcr_digest(&[pcr]).to_vec(),
        }
    }

    fn expectation<'a>(
        nonce: &'a [u8],
        sel: &'a [PcrSelection],
        pcrs: &'a [[u8; 32]],
    ) -> QuoteExpectation<'a> {
        QuoteExpectation {
            qualifying_data: nonce,
            selection: sel,
            pcr_values: pcrs,
        }
    }

    #[test]
    fn parse_round_trips_marshalled_quote() {
        let info = sample(b"nonce", [9; 32]);
        assert_eq!(parse_attest(&marshal_attest(&info)).unwrap(), info);
    }

    #[test]
    fn verifies_signed_quote_and_refuses_each_tamper() {
        let key = ak();
        let info = sample(b"head", [9; 32]);
        let attest = marshal_attest(&info);
        let sig = key.sign(&attest).unwrap();
        let sel = info.selection.clone();
        let pcrs = [[9u8; 32]];
        let ok = verify_quote(
            &attest,
            &sig,
            &key.public_key(),
            &expectation(b"head", &sel, &pcrs),
        );
        assert_eq!(ok.unwrap().info(), &info);

        // A flipped byte in the clock: the signature no longer covers it.
        let mut tampered = attest.clone();
        tampered[20] ^= 1;
        assert_eq!(
            verify_quote(
                &tampered,
                &sig,
                &key.public_key(),
                &expectation(b"head", &sel, &pcrs)
            ),
            Err(QuoteError::BadSignature)
        );
        // Another nonce.
        assert!(matches!(
            verify_quote(
                &attest,
                &sig,
                &key.public_key(),
                &expectation(b"other", &sel, &pcrs)
            ),
            Err(QuoteError::WrongQualifyingData { .. })
        ));
        // Other PCR values than the event log replays to.
        let other = [[8u8; 32]];
        assert!(matches!(
            verify_quote(
                &attest,
                &sig,
                &key.public_key(),
                &expectation(b"head", &sel, &other)
            ),
            Err(QuoteError::PcrMismatch { .. })
        ));
        // Another key.
        let stranger = SoftwareKey::from_bytes(&[8; 32]).unwrap();
        assert_eq!(
            verify_quote(
                &attest,
                &sig,
                &stranger.public_key(),
                &expectation(b"head", &sel, &pcrs)
            ),
            Err(QuoteError::BadSignature)
        );
    }

    #[test]
    fn refuses_structure_not_generated_by_tpm() {
        let mut attest = marshal_attest(&sample(b"n", [0; 32]));
        attest[0] = 0;
        assert_eq!(
            parse_attest(&attest),
            Err(QuoteError::NotTpmGenerated { found: 0x0054_4347 })
        );
    }

    #[test]
    fn refuses_truncated_and_trailing_bytes() {
        let attest = marshal_attest(&sample(b"n", [0; 32]));
        for cut in 0..attest.len() {
            assert!(parse_attest(&attest[..cut]).is_err(), "cut at {cut}");
        }
        let mut longer = attest.clone();
        longer.push(0);
        assert_eq!(
            parse_attest(&longer),
            Err(QuoteError::TrailingBytes { extra: 1 })
        );
    }
}

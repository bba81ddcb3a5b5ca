//! The attestation answer on `spoke/{gw}/up/attest`: a TPM quote over the application PCR with
//! the hub's nonce as qualifying data, and the event log that explains the PCR's value.
//!
//! The hub sends a fresh 32-byte nonce on `down/cmd` ([`Command::Attest`]); the gateway answers
//! with [`AttestAnswer`] (deterministic CBOR, at most [`MAX_ATTEST_ANSWER_BYTES`]).
//! [`verify_answer`] checks, at the hub: the gateway id, the nonce, that the log replays for the
//! quoted PCR, the quote (the enrolled AK's signature, `TPM_GENERATED`, qualifying data = nonce,
//! selection = that one SHA-256 PCR, PCR digest = the replayed value), and optionally the log
//! against golden measurements. It returns an [`AttestedGateway`] (private fields).
//!
//! The answer is not signed beyond the quote: the quote's signature covers the nonce and the PCR
//! digest, and the log is bound to the digest by replaying it, so nothing else needs a signature.
//! Does no I/O.
//!
//! [`Command::Attest`]: super::Command::Attest

use serde::{Deserialize, Serialize};

use super::{FLEET_FORMAT_VERSION, GatewayId};
use crate::attest::quote::{ALG_SHA256, QuoteExpectation, verify_quote};
use crate::attest::{
    AttestedQuote, EventLog, GoldenValues, MeasurementError, PcrSelection, QuoteError,
};
use crate::cbor::{self, CborError};
use crate::envelope::PublicKey;
use crate::ledger::QuoteEvidence;

/// Largest attestation answer accepted, bytes (a quote and an event log of up to
/// [`MAX_MEASUREMENTS`](crate::attest::eventlog::MAX_MEASUREMENTS) entries).
pub const MAX_ATTEST_ANSWER_BYTES: usize = 128 * 1024;

/// The gateway's answer to an attestation nonce. Fields are in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AttestAnswer {
    /// Format version.
    pub v: u8,
    /// The gateway.
    pub gw: GatewayId,
    /// The application PCR's event log.
    pub log: EventLog,
    /// The quoted application PCR.
    pub pcr: u8,
    /// The hub's nonce, echoed (the quote's qualifying data must equal it).
    #[serde(with = "serde_bytes")]
    pub nonce: [u8; 32],
    /// The quote: marshalled `TPMS_ATTEST` and the AK's signature.
    pub quote: QuoteEvidence,
}

/// Why an attestation answer was refused. [`code`](Self::code) gives a stable code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestAnswerError {
    /// Not a valid answer encoding (includes the size cap).
    #[error("attestation answer: {0}")]
    Cbor(#[from] CborError),
    /// Unsupported format version.
    #[error("attestation answer format version {found} (expected {FLEET_FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u8,
    },
    /// The answer names another gateway.
    #[error("attestation answer from {found}, expected {expected}")]
    WrongGateway {
        /// The gateway asked.
        expected: GatewayId,
        /// The gateway named.
        found: GatewayId,
    },
    /// The answer is for another nonce (stale or replayed).
    #[error(
        "attestation answer for nonce {}, expected {}",
        hex::encode(found),
        hex::encode(expected)
    )]
    WrongNonce {
        /// The nonce sent.
        expected: [u8; 32],
        /// The nonce echoed.
        found: [u8; 32],
    },
    /// The event log does not replay for the quoted PCR, or fails the golden measurements.
    #[error("attestation event log: {0}")]
    Log(#[from] MeasurementError),
    /// The quote does not verify (signature, nonce, selection or PCR digest).
    #[error("attestation quote: {0}")]
    Quote(#[from] QuoteError),
}

impl AttestAnswerError {
    /// A stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Cbor(_) => "attest-malformed",
            Self::Version { .. } => "attest-version",
            Self::WrongGateway { .. } => "attest-wrong-gateway",
            Self::WrongNonce { .. } => "attest-wrong-nonce",
            Self::Log(MeasurementError::NotGolden { .. } | MeasurementError::Missing { .. }) => {
                "attest-not-golden"
            }
            Self::Log(_) => "attest-bad-log",
            Self::Quote(QuoteError::BadSignature) => "attest-bad-signature",
            Self::Quote(QuoteError::PcrMismatch { .. }) => "attest-pcr-mismatch",
            Self::Quote(_) => "attest-bad-quote",
        }
    }
}

/// A gateway whose quote verified for the hub's nonce. Private fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttestedGateway {
    gateway: GatewayId,
    pcr: u8,
    pcr_value: [u8; 32],
    log: EventLog,
    quote: AttestedQuote,
    golden_checked: bool,
}

impl AttestedGateway {
    /// The gateway.
    pub fn gateway(&self) -> &GatewayId {
        &self.gateway
    }
    /// The quoted application PCR and its value.
    pub fn pcr(&self) -> (u8, [u8; 32]) {
        (self.pcr, self.pcr_value)
    }
    /// The verified event log (what was measured, in order).
    pub fn log(&self) -> &EventLog {
        &self.log
    }
    /// The verified quote (clock, reset and restart counts, firmware version).
    pub fn quote(&self) -> &AttestedQuote {
        &self.quote
    }
    /// Whether the log was also checked against golden measurements.
    pub fn golden_checked(&self) -> bool {
        self.golden_checked
    }
}

impl AttestAnswer {
    /// An answer of the current format version.
    pub fn new(
        gw: GatewayId,
        nonce: [u8; 32],
        pcr: u8,
        log: EventLog,
        quote: QuoteEvidence,
    ) -> Self {
        Self {
            v: FLEET_FORMAT_VERSION,
            gw,
            log,
            pcr,
            nonce,
            quote,
        }
    }

    /// Encodes the answer (refused over the cap).
    pub fn to_cbor(&self) -> Result<Vec<u8>, AttestAnswerError> {
        let bytes = cbor::to_vec(self)?;
        if bytes.len() > MAX_ATTEST_ANSWER_BYTES {
            return Err(CborError::TooLarge {
                len: bytes.len(),
                max: MAX_ATTEST_ANSWER_BYTES,
            }
            .into());
        }
        Ok(bytes)
    }

    /// Decodes an answer (bounds and version only; nothing verified).
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestAnswerError> {
        let answer: Self = cbor::from_slice(bytes, MAX_ATTEST_ANSWER_BYTES)?;
        if answer.v != FLEET_FORMAT_VERSION {
            return Err(AttestAnswerError::Version { found: answer.v });
        }
        Ok(answer)
    }
}

/// Verifies an answer at the hub against the nonce it sent and the gateway's enrolled AK;
/// `golden`, when given, must admit every measurement of the log.
pub fn verify_answer(
    bytes: &[u8],
    gateway: &GatewayId,
    ak: &PublicKey,
    nonce: &[u8; 32],
    golden: Option<&GoldenValues>,
) -> Result<AttestedGateway, AttestAnswerError> {
    let answer = AttestAnswer::decode(bytes)?;
    if answer.gw != *gateway {
        return Err(AttestAnswerError::WrongGateway {
            expected: gateway.clone(),
            found: answer.gw,
        });
    }
    if answer.nonce != *nonce {
        return Err(AttestAnswerError::WrongNonce {
            expected: *nonce,
            found: answer.nonce,
        });
    }
    let pcr_value = answer.log.replay(answer.pcr)?;
    let selection = [PcrSelection {
        hash: ALG_SHA256,
        pcrs: vec![answer.pcr],
    }];
    let quote = verify_quote(
        &answer.quote.attest,
        &answer.quote.sig,
        ak,
        &QuoteExpectation {
            qualifying_data: nonce,
            selection: &selection,
            pcr_values: &[pcr_value],
        },
    )?;
    if let Some(golden) = golden {
        answer.log.check_golden(golden)?;
    }
    Ok(AttestedGateway {
        gateway: answer.gw,
        pcr: answer.pcr,
        pcr_value,
        log: answer.log,
        quote,
        golden_checked: golden.is_some(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attest::quote::{ClockInfo, QuoteInfo, marshal_attest, pcr_digest};
    use crate::attest::{Component, Measurement};
    use crate::envelope::{Signer as _, SoftwareKey};

    const PCR: u8 = 15;

    fn log() -> EventLog {
        EventLog(vec![
            Measurement {
                pcr: PCR,
                what: Component::Binary,
                digest: [1; 32],
            },
            Measurement {
                pcr: PCR,
                what: Component::Policy,
                digest: [2; 32],
            },
        ])
    }

    /// What a TPM would return for `log` and `nonce` (a software AK stands in for the TPM's).
    fn answer(ak: &SoftwareKey, log: &EventLog, nonce: [u8; 32]) -> AttestAnswer {
        let value = log.replay(PCR).unwrap();
        let attest = marshal_attest(&QuoteInfo {
            qualified_signer: vec![0, 0x0b, 1, 2],
            extra_data: nonce.to_vec(),
            clock: ClockInfo {
                clock: 1000,
                reset_count: 1,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 7,
            selection: vec![PcrSelection {
                hash: ALG_SHA256,
                pcrs: vec![PCR],
            }],
            pcr_digest: pcr_digest(&[value]).to_vec(),
        });
        let sig = ak.sign(&attest).unwrap().to_vec();
        AttestAnswer::new(
            GatewayId::new("spoke-01").unwrap(),
            nonce,
            PCR,
            log.clone(),
            QuoteEvidence { sig, attest },
        )
    }

    fn golden(log: &EventLog) -> GoldenValues {
        let mut g = GoldenValues::default();
        for m in &log.0 {
            g.0.entry(m.what).or_default().insert(m.digest);
        }
        g
    }

    #[test]
    fn a_fresh_answer_verifies_with_golden_values() {
        let ak = SoftwareKey::from_bytes(&[0x44; 32]).unwrap();
        let gw = GatewayId::new("spoke-01").unwrap();
        let bytes = answer(&ak, &log(), [9; 32]).to_cbor().unwrap();
        let ok = verify_answer(
            &bytes,
            &gw,
            &ak.public_key(),
            &[9; 32],
            Some(&golden(&log())),
        )
        .unwrap();
        assert_eq!(ok.pcr(), (PCR, log().replay(PCR).unwrap()));
        assert!(ok.golden_checked());
        assert_eq!(ok.quote().info().clock.reset_count, 1);
    }

    #[test]
    fn refuses_a_replayed_answer_a_doctored_log_and_another_ak() {
        let ak = SoftwareKey::from_bytes(&[0x44; 32]).unwrap();
        let gw = GatewayId::new("spoke-01").unwrap();
        let good = answer(&ak, &log(), [9; 32]);
        let bytes = good.to_cbor().unwrap();
        // An old answer replayed against a new nonce.
        let err = verify_answer(&bytes, &gw, &ak.public_key(), &[10; 32], None).unwrap_err();
        assert_eq!(err.code(), "attest-wrong-nonce");
        // The nonce field rewritten to the new nonce: the quote still carries the old one.
        let mut rewritten = good.clone();
        rewritten.nonce = [10; 32];
        let err = verify_answer(
            &rewritten.to_cbor().unwrap(),
            &gw,
            &ak.public_key(),
            &[10; 32],
            None,
        )
        .unwrap_err();
        assert!(matches!(
            err,
            AttestAnswerError::Quote(QuoteError::WrongQualifyingData { .. })
        ));
        // A log that hides a measurement no longer replays to the quoted digest.
        let mut doctored = good.clone();
        doctored.log.0.pop();
        let err = verify_answer(
            &doctored.to_cbor().unwrap(),
            &gw,
            &ak.public_key(),
            &[9; 32],
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), "attest-pcr-mismatch");
        // Another gateway's AK.
        let other = SoftwareKey::from_bytes(&[0x45; 32]).unwrap();
        let err = verify_answer(&bytes, &gw, &other.public_key(), &[9; 32], None).unwrap_err();
        assert_eq!(err.code(), "attest-bad-signature");
        // Asked of another gateway.
        let err = verify_answer(
            &bytes,
            &GatewayId::new("spoke-02").unwrap(),
            &ak.public_key(),
            &[9; 32],
            None,
        )
        .unwrap_err();
        assert_eq!(err.code(), "attest-wrong-gateway");
    }

    #[test]
    fn refuses_a_measurement_outside_the_golden_values() {
        let ak = SoftwareKey::from_bytes(&[0x44; 32]).unwrap();
        let gw = GatewayId::new("spoke-01").unwrap();
        let mut g = golden(&log());
        g.0.insert(Component::Policy, [[3; 32]].into_iter().collect());
        let bytes = answer(&ak, &log(), [9; 32]).to_cbor().unwrap();
        let err = verify_answer(&bytes, &gw, &ak.public_key(), &[9; 32], Some(&g)).unwrap_err();
        assert_eq!(err.code(), "attest-not-golden");
    }

    #[test]
    fn refuses_oversized_answers() {
        let err = AttestAnswer::decode(&vec![0; MAX_ATTEST_ANSWER_BYTES + 1]).unwrap_err();
        assert_eq!(err.code(), "attest-malformed");
    }
}

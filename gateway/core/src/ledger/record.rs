//! The two record formats of the ledger and how a record's bytes are decoded and hashed.
//!
//! Struct fields are declared in deterministic CBOR key order (shorter keys first, then bytewise)
//! so that [`crate::cbor`] round-trips them byte for byte. A record's hash, the `prev` of the next
//! record, is SHA-256 over the whole tagged `COSE_Sign1` (payload and signature). No I/O here.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Event, FORMAT_VERSION, MAX_BODY_LEN, MAX_ID_LEN, MAX_RECORD_LEN};
use crate::attest::{EventLog, eventlog::MAX_MEASUREMENTS};
use crate::cbor::{self, CborError};
use crate::envelope::{self, ContentType, Envelope, EnvelopeError};

/// The signed payload of a job or gateway event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryPayload {
    /// Format version ([`FORMAT_VERSION`]).
    pub v: u8,
    /// The gateway that wrote it.
    pub gw: String,
    /// TPM NV counter value in force (bumped at each start and checkpoint).
    pub ctr: u64,
    /// The event.
    pub evt: Event,
    /// Position in the chain, from 0.
    pub seq: u64,
    /// SHA-256 of the previous record, zeros for `seq == 0`.
    #[serde(with = "serde_bytes")]
    pub prev: [u8; 32],
    /// Unix time in milliseconds when the event was recorded.
    pub time: u64,
    /// Signed by a software key in insecure development mode.
    pub insecure: bool,
}

/// A TPM quote as carried in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuoteEvidence {
    /// The attestation key's signature, r‖s.
    #[serde(with = "serde_bytes")]
    pub sig: Vec<u8>,
    /// The marshalled `TPMS_ATTEST`.
    #[serde(with = "serde_bytes")]
    pub attest: Vec<u8>,
}

/// The signed payload of a checkpoint: the chain head quoted by the TPM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckpointPayload {
    /// Format version.
    pub v: u8,
    /// The gateway that wrote it.
    pub gw: String,
    /// TPM NV counter value, bumped for this checkpoint.
    pub ctr: u64,
    /// The application PCR's event log at quote time.
    pub log: EventLog,
    /// Position in the chain.
    pub seq: u64,
    /// SHA-256 of the previous record: the chain head this checkpoint covers.
    #[serde(with = "serde_bytes")]
    pub prev: [u8; 32],
    /// Unix time in milliseconds.
    pub time: u64,
    /// The quote whose qualifying data is `prev`; `None` only in insecure mode.
    pub quote: Option<QuoteEvidence>,
    /// Signed by a software key in insecure development mode.
    pub insecure: bool,
}

/// A decoded record (signature not yet checked).
#[derive(Debug, Clone)]
pub enum Record {
    /// A job or gateway event.
    Entry {
        /// The payload.
        payload: EntryPayload,
        /// The envelope, for signature verification.
        envelope: Envelope,
    },
    /// A checkpoint.
    Checkpoint {
        /// The payload.
        payload: CheckpointPayload,
        /// The envelope, for signature verification.
        envelope: Envelope,
    },
}

/// Why a record's bytes could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RecordError {
    /// Not a valid envelope of either record type.
    #[error("not a ledger record: {0}")]
    Envelope(#[source] EnvelopeError),
    /// The payload is not valid CBOR for the record type.
    #[error("payload is not a valid record: {0}")]
    Payload(#[source] CborError),
    /// An unknown format version.
    #[error("record format version {found} is not {FORMAT_VERSION}")]
    Version {
        /// The version found.
        found: u8,
    },
    /// A field exceeds its bound.
    #[error("{field} of {len} exceeds the cap of {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
}

impl Record {
    /// Decodes one record's bytes: a `COSE_Sign1` of content type ledger entry or checkpoint.
    pub fn decode(bytes: &[u8]) -> Result<Self, RecordError> {
        let (envelope, is_checkpoint) =
            match envelope::decode(bytes, ContentType::LedgerEntry, MAX_RECORD_LEN) {
                Ok(e) => (e, false),
                Err(EnvelopeError::WrongContentType { .. }) => (
                    envelope::decode(bytes, ContentType::Checkpoint, MAX_RECORD_LEN)
                        .map_err(RecordError::Envelope)?,
                    true,
                ),
                Err(e) => return Err(RecordError::Envelope(e)),
            };
        let raw = envelope.unverified_payload();
        let record = if is_checkpoint {
            let payload: CheckpointPayload =
                cbor::from_slice(raw, MAX_RECORD_LEN).map_err(RecordError::Payload)?;
            check_common(payload.v, &payload.gw)?;
            if payload.log.0.len() > MAX_MEASUREMENTS {
                return Err(RecordError::TooLong {
                    field: "event log",
                    len: payload.log.0.len(),
                    max: MAX_MEASUREMENTS,
                });
            }
            Record::Checkpoint { payload, envelope }
        } else {
            let payload: EntryPayload =
                cbor::from_slice(raw, MAX_RECORD_LEN).map_err(RecordError::Payload)?;
            check_common(payload.v, &payload.gw)?;
            if let Some(job) = &payload.evt.job {
                bounded("job id", job.len(), MAX_ID_LEN)?;
            }
            bounded("event body", payload.evt.body.len(), MAX_BODY_LEN)?;
            Record::Entry { payload, envelope }
        };
        Ok(record)
    }

    /// Sequence number.
    pub fn seq(&self) -> u64 {
        match self {
            Self::Entry { payload, .. } => payload.seq,
            Self::Checkpoint { payload, .. } => payload.seq,
        }
    }

    /// Hash of the previous record.
    pub fn prev(&self) -> [u8; 32] {
        match self {
            Self::Entry { payload, .. } => payload.prev,
            Self::Checkpoint { payload, .. } => payload.prev,
        }
    }

    /// TPM counter value.
    pub fn counter(&self) -> u64 {
        match self {
            Self::Entry { payload, .. } => payload.ctr,
            Self::Checkpoint { payload, .. } => payload.ctr,
        }
    }

    /// Gateway id.
    pub fn gateway(&self) -> &str {
        match self {
            Self::Entry { payload, .. } => &payload.gw,
            Self::Checkpoint { payload, .. } => &payload.gw,
        }
    }

    /// Time in Unix milliseconds.
    pub fn time(&self) -> u64 {
        match self {
            Self::Entry { payload, .. } => payload.time,
            Self::Checkpoint { payload, .. } => payload.time,
        }
    }

    /// Whether it carries the insecure marker.
    pub fn insecure(&self) -> bool {
        match self {
            Self::Entry { payload, .. } => payload.insecure,
            Self::Checkpoint { payload, .. } => payload.insecure,
        }
    }

    /// The envelope.
    pub fn envelope(&self) -> &Envelope {
        match self {
            Self::Entry { envelope, .. } | Self::Checkpoint { envelope, .. } => envelope,
        }
    }
}

fn check_common(v: u8, gw: &str) -> Result<(), RecordError> {
    if v != FORMAT_VERSION {
        return Err(RecordError::Version { found: v });
    }
    bounded("gateway id", gw.len(), MAX_ID_LEN)
}

fn bounded(field: &'static str, len: usize, max: usize) -> Result<(), RecordError> {
    if len > max {
        return Err(RecordError::TooLong { field, len, max });
    }
    Ok(())
}

/// The hash of a record's bytes, which the next record names as `prev`.
pub fn record_hash(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

//! The writer's side of the chain, sans-IO: builds and signs the next record from the head.
//!
//! [`Chain`] knows the head (next `seq`, hash of the last record, counter in force) and seals the
//! next record with a [`Signer`] (the TPM's event key, or the insecure software key). It refuses
//! counter values the verifier would refuse. The caller writes the sealed bytes durably and only
//! then calls [`Chain::commit`]; a record that was never committed is simply not part of the chain.
//! The TPM counter and quotes are inputs; this module does no I/O.

use super::record::{CheckpointPayload, EntryPayload, QuoteEvidence, record_hash};
use super::{Event, EventKind, FORMAT_VERSION, MAX_BODY_LEN, MAX_ID_LEN};
use crate::attest::EventLog;
use crate::cbor::{self, CborError};
use crate::envelope::{self, ContentType, EnvelopeError, SignError, Signer};

/// Where the chain stands: what the next record must name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainHead {
    /// The next record's `seq` (= number of records so far).
    pub next_seq: u64,
    /// Hash of the last record (zeros for an empty ledger).
    pub hash: [u8; 32],
    /// The TPM counter value in force (0 for an empty ledger).
    pub counter: u64,
}

impl ChainHead {
    /// The head of an empty ledger.
    pub const EMPTY: ChainHead = ChainHead {
        next_seq: 0,
        hash: [0; 32],
        counter: 0,
    };
}

/// Produces TPM quotes over the application PCR (the daemon's TPM adapter, or a test fake).
pub trait Quoter {
    /// Quotes the application PCR with `qualifying_data` as the nonce.
    fn quote(&self, qualifying_data: &[u8]) -> Result<QuoteEvidence, SignError>;
}

/// Why a record could not be sealed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    /// A start or checkpoint must move the counter forward; other entries must keep it.
    #[error("counter {given} not allowed after {current} for {kind}")]
    Counter {
        /// The head's counter.
        current: u64,
        /// The counter given.
        given: u64,
        /// What was being sealed.
        kind: &'static str,
    },
    /// The first record must be a gateway start (it declares the keys).
    #[error("the first record of a ledger must be a gateway start")]
    FirstNotStart,
    /// An identifier or body exceeds its cap.
    #[error("{field} of {len} bytes exceeds the cap of {max}")]
    TooLong {
        /// Which field.
        field: &'static str,
        /// Its length.
        len: usize,
        /// The cap.
        max: usize,
    },
    /// The sealed record was built on another head than the current one.
    #[error("record {seq} was sealed on a stale head")]
    Stale {
        /// Its seq.
        seq: u64,
    },
    /// Encoding failed.
    #[error(transparent)]
    Cbor(#[from] CborError),
    /// Signing failed (TPM error).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// Quoting failed (TPM error).
    #[error(transparent)]
    Quote(#[from] SignError),
}

/// A signed record not yet committed to the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedRecord {
    bytes: Vec<u8>,
    prev: [u8; 32],
    after: ChainHead,
}

impl SealedRecord {
    /// The record's bytes, to be framed and written.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Its sequence number.
    pub fn seq(&self) -> u64 {
        self.after.next_seq.saturating_sub(1)
    }

    /// The head once this record is committed.
    pub fn head_after(&self) -> ChainHead {
        self.after
    }
}

/// The writer's chain state.
#[derive(Debug, Clone)]
pub struct Chain {
    gateway: String,
    head: ChainHead,
    insecure: bool,
}

impl Chain {
    /// Resumes a chain at `head` (from a verified ledger, or [`ChainHead::EMPTY`]).
    pub fn new(gateway: &str, head: ChainHead, insecure: bool) -> Result<Self, ChainError> {
        if gateway.len() > MAX_ID_LEN {
            return Err(ChainError::TooLong {
                field: "gateway id",
                len: gateway.len(),
                max: MAX_ID_LEN,
            });
        }
        Ok(Self {
            gateway: gateway.to_owned(),
            head,
            insecure,
        })
    }

    /// The current head.
    pub fn head(&self) -> ChainHead {
        self.head
    }

    /// Whether records are sealed with the insecure marker.
    pub fn insecure(&self) -> bool {
        self.insecure
    }

    /// Seals an event. `counter` is the TPM counter: freshly incremented for a gateway start,
    /// the head's value otherwise.
    pub fn seal_entry(
        &self,
        event: Event,
        time_ms: u64,
        counter: u64,
        signer: &dyn Signer,
    ) -> Result<SealedRecord, ChainError> {
        let is_start = event.kind == EventKind::GatewayStart;
        if self.head.next_seq == 0 && !is_start {
            return Err(ChainError::FirstNotStart);
        }
        self.check_counter(counter, is_start, event.kind.as_str())?;
        if let Some(job) = &event.job {
            bounded("job id", job.len(), MAX_ID_LEN)?;
        }
        bounded("event body", event.body.len(), MAX_BODY_LEN)?;
        let payload = EntryPayload {
            v: FORMAT_VERSION,
            gw: self.gateway.clone(),
            ctr: counter,
            evt: event,
            seq: self.head.next_seq,
            prev: self.head.hash,
            time: time_ms,
            insecure: self.insecure,
        };
        let bytes = envelope::sign(
            ContentType::LedgerEntry,
            &cbor::to_vec(&payload)?,
            &[signer],
        )?;
        Ok(self.sealed(bytes, counter))
    }

    /// Seals a checkpoint over the current head: `counter` must be freshly incremented, and the
    /// quote (absent only in insecure mode) is taken with the head's hash as qualifying data.
    pub fn seal_checkpoint(
        &self,
        time_ms: u64,
        counter: u64,
        log: EventLog,
        quoter: Option<&dyn Quoter>,
        signer: &dyn Signer,
    ) -> Result<SealedRecord, ChainError> {
        if self.head.next_seq == 0 {
            return Err(ChainError::FirstNotStart);
        }
        self.check_counter(counter, true, "checkpoint")?;
        let quote = match quoter {
            Some(q) => Some(q.quote(&self.head.hash)?),
            None => None,
        };
        let payload = CheckpointPayload {
            v: FORMAT_VERSION,
            gw: self.gateway.clone(),
            ctr: counter,
            log,
            seq: self.head.next_seq,
            prev: self.head.hash,
            time: time_ms,
            quote,
            insecure: self.insecure,
        };
        let bytes = envelope::sign(ContentType::Checkpoint, &cbor::to_vec(&payload)?, &[signer])?;
        Ok(self.sealed(bytes, counter))
    }

    /// Makes a durably written record part of the chain.
    pub fn commit(&mut self, sealed: &SealedRecord) -> Result<ChainHead, ChainError> {
        if sealed.prev != self.head.hash || sealed.seq() != self.head.next_seq {
            return Err(ChainError::Stale { seq: sealed.seq() });
        }
        self.head = sealed.after;
        Ok(self.head)
    }

    fn sealed(&self, bytes: Vec<u8>, counter: u64) -> SealedRecord {
        let after = ChainHead {
            next_seq: self.head.next_seq + 1,
            hash: record_hash(&bytes),
            counter,
        };
        SealedRecord {
            bytes,
            prev: self.head.hash,
            after,
        }
    }

    fn check_counter(&self, given: u64, bump: bool, kind: &'static str) -> Result<(), ChainError> {
        let current = self.head.counter;
        let ok = if bump {
            given > current
        } else {
            given == current
        };
        if ok {
            Ok(())
        } else {
            Err(ChainError::Counter {
                current,
                given,
                kind,
            })
        }
    }
}

fn bounded(field: &'static str, len: usize, max: usize) -> Result<(), ChainError> {
    if len > max {
        return Err(ChainError::TooLong { field, len, max });
    }
    Ok(())
}

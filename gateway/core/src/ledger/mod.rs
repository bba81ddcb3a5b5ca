//! The release ledger: signed, hash-chained records of every job transition and gateway event.
//!
//! Each record is one `COSE_Sign1` ([`crate::envelope`]) over a deterministic-CBOR payload that
//! carries the gateway id, a sequence number `seq`, `prev` (SHA-256 of the previous record's
//! bytes), a time, the TPM NV counter value and, for records signed by a software key, an explicit
//! `insecure` marker. Job records ([`ContentType::LedgerEntry`](crate::envelope::ContentType))
//! carry an [`Event`]; checkpoints ([`ContentType::Checkpoint`](crate::envelope::ContentType))
//! carry a TPM quote whose qualifying data is the chain head and the application PCR's event log.
//!
//! This module owns the format ([`record`]), the on-disk framing and torn-tail scan ([`frame`]),
//! the sans-IO writer state ([`chain::Chain`]) and verification ([`verify`]). It does no I/O:
//! the daemon's `store` writes and fsyncs files, and its `tpm` adapter signs, counts and quotes.

pub mod chain;
pub mod event;
pub mod frame;
pub mod record;
pub mod verify;

pub use chain::{Chain, ChainError, ChainHead, Quoter, SealedRecord};
pub use event::{Event, EventKind, JobStage, StartBody};
pub use record::{CheckpointPayload, EntryPayload, QuoteEvidence, Record, RecordError};
pub use verify::{Fault, LedgerError, LedgerTrust, VerifiedLedger, Verifier};

/// Largest record accepted (one signed entry or checkpoint, bytes).
pub const MAX_RECORD_LEN: usize = 256 * 1024;
/// Largest event body (CBOR filled by the job modules), bytes.
pub const MAX_BODY_LEN: usize = 192 * 1024;
/// Longest gateway or job identifier, bytes.
pub const MAX_ID_LEN: usize = 64;
/// Version of the record format.
pub const FORMAT_VERSION: u8 = 1;

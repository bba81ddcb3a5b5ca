//! The fleet link's protocol, sans-IO: what travels between a spoke gateway and the hub over MQTT,
//! and the two state machines that make delivery end to end.
//!
//! This module owns:
//! - [`topic`]: the topic names of DESIGN.md ("Fleet link") and their parsing, with validated
//!   gateway ids ([`GatewayId`]);
//! - [`receipt`]: hub-signed receipts (COSE_Sign1, [`ContentType::Receipt`]) saying "everything of
//!   gateway G up to seq S, whose entry hashes to H, is durably stored at the hub";
//! - [`command`]: the hub's commands on `down/cmd` (attestation nonce, resend-from, abort, rebirth);
//! - [`attest`]: the answer to an attestation nonce (TPM quote + event log) and its verification;
//! - [`birth`]: the retained birth message and the Last Will;
//! - [`enroll`]: the enrollment request carrying a gateway's TPM-held AK and mTLS key to the hub;
//! - [`delivery`]: the gateway's [`Outbox`] (the ledger is the outbox: what to publish, what a
//!   receipt covers, what to re-send, how old the unreceipted backlog is);
//! - [`inbox`]: the hub's [`Inbox`] (de-duplication by `(gateway, seq, hash)`, tampering when a seq
//!   comes back with another hash, gap detection and resend-from);
//! - [`metadata`]: signed fleet metadata (trust-root chain, policy and model bundles, revocation
//!   list) and the anti-rollback rule;
//! - [`wire`]: reading the routing fields (`gw`, `seq`, `prev`) of a sealed ledger record.
//!
//! It does **no I/O**: no sockets, no clock, no files. The daemon's `mqtt` adapter and the hub tool
//! feed bytes and times in and act on what comes out. It does not decide what a ledger entry
//! contains (that is `ledger`), nor how the TLS session is set up (that is the daemon).
//!
//! Why receipts: a broker PUBACK is not delivery (the MQTT client keeps nothing on disk and the
//! broker loses acknowledged messages when killed), so an entry leaves the outbox only when a
//! receipt signed by the hub's online `jobs` role covers it. The `jobs` role signs receipts as well
//! as jobs: both are the hub's online, per-gateway statements, and a separate role would add a key
//! without adding a separation of duty.
//!
//! [`ContentType::Receipt`]: crate::envelope::ContentType::Receipt

pub mod attest;
pub mod birth;
pub mod command;
pub mod delivery;
pub mod enroll;
pub mod inbox;
pub mod metadata;
pub mod receipt;
pub mod topic;
pub mod wire;

pub use attest::{AttestAnswer, AttestAnswerError, AttestedGateway};
pub use birth::{Birth, Death, LedgerHead, Measurement, SoftwareVersion};
pub use command::{Command, HubCommand};
pub use delivery::{DeliveryError, Outbox, OutboxConfig, Outgoing};
pub use enroll::{EnrollError, EnrolledIdentity, EnrollmentRequest};
pub use inbox::{Inbox, InboxError, Received};
pub use receipt::{ReceiptError, ReceiptPayload, VerifiedReceipt};
pub use topic::{FleetTopic, GatewayId, SpokeTopic, Topic, TopicError};
pub use wire::{EntryHeader, WireError};

/// Format version of every fleet message defined here.
pub const FLEET_FORMAT_VERSION: u8 = 1;
/// Largest job message accepted on `down/job` (and the MQTT maximum packet size), bytes.
pub const MAX_JOB_MESSAGE_BYTES: usize = 8 * 1024 * 1024;
/// Largest sealed ledger record carried on `up/evt`, bytes.
pub const MAX_EVENT_MESSAGE_BYTES: usize = 256 * 1024;

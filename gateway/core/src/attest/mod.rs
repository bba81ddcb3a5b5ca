//! Attestation evidence checked over bytes: the application PCR's event log and TPM quotes.
//!
//! The gateway measures its binary, configuration, trust root, active policy and model into one
//! application PCR and keeps its own event log of what it extended ([`eventlog`]). A TPM quote
//! signed by the attestation key ([`quote`]) then proves which of those were in force: the
//! verifier replays the log, recomputes the PCR digest and checks it, the qualifying data (a hub
//! nonce or the ledger's chain head) and the signature against the quote.
//!
//! This module does no I/O and never talks to a TPM: the daemon's `tpm` adapter produces the
//! bytes, and the hub tool, the ledger verifier and the tests consume them here. The hub side of
//! credential activation (software MakeCredential, AK attribute checks) is in [`credential`].

pub mod credential;
pub mod eventlog;
pub mod quote;

pub use credential::{
    CheckedAk, CredentialChallenge, CredentialError, check_activation, check_ak_public,
    make_credential,
};
pub use eventlog::{Component, EventLog, GoldenValues, Measurement, MeasurementError};
pub use quote::{
    AttestedQuote, ClockInfo, PcrSelection, QuoteError, QuoteExpectation, QuoteInfo, parse_attest,
    verify_quote,
};

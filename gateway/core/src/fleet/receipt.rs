//! Hub receipts: the hub's signed statement that it has durably stored a gateway's ledger entries.
//!
//! A receipt is one `COSE_Sign1` ([`ContentType::Receipt`]) over a deterministic-CBOR
//! [`ReceiptPayload`]: the gateway id, the highest **contiguous** seq the hub holds for it, the
//! SHA-256 of that entry's record bytes, and the hub's time. It covers every entry up to and
//! including `seq`: the hub only signs once it holds them all and has checked that they chain.
//! Receipts are signed by the hub's online `jobs` role (see the [module docs](super)).
//!
//! [`verify`] returns a [`VerifiedReceipt`] (private fields), the only thing the gateway's
//! [`Outbox`](super::Outbox) accepts. This module does no I/O.

use serde::{Deserialize, Serialize};

use super::metadata::RoleKeysInForce;
use super::{FLEET_FORMAT_VERSION, GatewayId};
use crate::cbor::{self, CborError};
use crate::envelope::{self, ContentType, EnvelopeError, Signer};
use crate::trust::{Role, TrustedRoot};

/// Largest receipt accepted, bytes (one payload and up to a few signatures).
pub const MAX_RECEIPT_BYTES: usize = 4096;

/// The signed content of a receipt. Fields are in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiptPayload {
    /// Format version.
    pub v: u8,
    /// The gateway whose entries are covered.
    pub gw: GatewayId,
    /// The highest contiguous seq stored at the hub.
    pub seq: u64,
    /// SHA-256 of the record bytes of entry `seq`.
    #[serde(with = "serde_bytes")]
    pub hash: [u8; 32],
    /// Hub time when it signed, Unix milliseconds.
    pub time: u64,
}

/// Why a receipt was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReceiptError {
    /// The envelope is malformed or its signatures do not meet the `jobs` threshold.
    #[error("receipt envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The payload is not a valid receipt.
    #[error("receipt payload: {0}")]
    Payload(#[from] CborError),
    /// Unsupported format version.
    #[error("receipt format version {found} (expected {FLEET_FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u8,
    },
    /// The receipt is for another gateway.
    #[error("receipt for gateway {found}, this is {expected}")]
    WrongGateway {
        /// This gateway.
        expected: GatewayId,
        /// The gateway named in the receipt.
        found: GatewayId,
    },
}

/// A receipt whose signatures met the `jobs` role threshold and that names this gateway.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedReceipt {
    payload: ReceiptPayload,
}

impl VerifiedReceipt {
    /// The covered seq (everything up to it).
    pub fn seq(&self) -> u64 {
        self.payload.seq
    }

    /// The hash of the covered entry.
    pub fn hash(&self) -> &[u8; 32] {
        &self.payload.hash
    }

    /// The gateway.
    pub fn gateway(&self) -> &GatewayId {
        &self.payload.gw
    }

    /// Hub time of signing, Unix milliseconds.
    pub fn time_ms(&self) -> u64 {
        self.payload.time
    }
}

/// Signs a receipt with the hub's `jobs` keys (as many as the role's threshold asks for).
pub fn sign(payload: &ReceiptPayload, signers: &[&dyn Signer]) -> Result<Vec<u8>, ReceiptError> {
    let body = cbor::to_vec(payload)?;
    Ok(envelope::sign(ContentType::Receipt, &body, signers)?)
}

/// Verifies a receipt against the pinned trust root's `jobs` role and this gateway's id.
pub fn verify(
    bytes: &[u8],
    root: &TrustedRoot,
    gateway: &GatewayId,
) -> Result<VerifiedReceipt, ReceiptError> {
    verify_in_force(bytes, RoleKeysInForce::without_revocations(root), gateway)
}

/// [`verify`] against the keys in force: a revoked `jobs` key's signature does not count.
pub fn verify_in_force(
    bytes: &[u8],
    keys: RoleKeysInForce<'_>,
    gateway: &GatewayId,
) -> Result<VerifiedReceipt, ReceiptError> {
    let env = envelope::decode(bytes, ContentType::Receipt, MAX_RECEIPT_BYTES)?;
    let root = keys.root;
    let keys = keys.keys(Role::Jobs);
    let verified = env.verify(&root.role(&keys, Role::Jobs))?;
    let payload: ReceiptPayload = cbor::from_slice(verified.payload(), MAX_RECEIPT_BYTES)?;
    if payload.v != FLEET_FORMAT_VERSION {
        return Err(ReceiptError::Version { found: payload.v });
    }
    if payload.gw != *gateway {
        return Err(ReceiptError::WrongGateway {
            expected: gateway.clone(),
            found: payload.gw,
        });
    }
    Ok(VerifiedReceipt { payload })
}

/// Decodes a receipt's payload without checking signatures (for fuzzing and for showing people a
/// receipt that failed verification). Never use the result to mark anything delivered.
pub fn decode_unverified(bytes: &[u8]) -> Result<ReceiptPayload, ReceiptError> {
    let env = envelope::decode(bytes, ContentType::Receipt, MAX_RECEIPT_BYTES)?;
    Ok(cbor::from_slice(
        env.unverified_payload(),
        MAX_RECEIPT_BYTES,
    )?)
}

#[cfg(test)]
mod tests;

//! The hub's inbox: de-duplication, tamper detection and gap repair for every gateway's entries.
//!
//! The hub feeds each sealed record it receives on `spoke/{gw}/up/evt` as an [`EntryHeader`]
//! (`seq`, `prev`, `hash`) to [`Inbox::receive`]. The inbox decides:
//!
//! - a `(gateway, seq, hash)` it already holds is a **duplicate** (at-least-once delivery makes
//!   them normal) and is ignored;
//! - the same `(gateway, seq)` with **another hash** is **tampering** (equivocation or a forged
//!   record): refused with both hashes as evidence, never stored;
//! - a record whose `prev` does not match its stored neighbour's hash breaks the chain: refused;
//! - a record past the first missing seq is held and reported as a **gap**, so the hub sends
//!   `resend-from` the first missing seq;
//! - when the contiguous run from seq 0 grows, the new head is what the next receipt covers.
//!
//! Memory is bounded per gateway by [`MAX_AHEAD`] out-of-order records. The hub stores a record
//! durably before it signs a receipt for it, and rebuilds the inbox from its store at start
//! ([`Inbox::restore`]). This module does no I/O.

use std::collections::BTreeMap;

use super::{EntryHeader, GatewayId};

/// How far past the first missing seq a record may arrive and still be held.
pub const MAX_AHEAD: u64 = 4096;

/// What became of a received record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Received {
    /// New and stored-worthy. `covered` is the contiguous head to receipt, when it advanced;
    /// `gap_from` is the first missing seq, when this record arrived past a gap.
    New {
        /// `(seq, hash)` the hub may now receipt.
        covered: Option<(u64, [u8; 32])>,
        /// The first missing seq, to ask `resend-from`.
        gap_from: Option<u64>,
    },
    /// Already held with the same hash: ignore (but re-send the current receipt, the gateway
    /// evidently has not seen it).
    Duplicate,
}

/// Why the inbox refused a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InboxError {
    /// Same gateway and seq, different hash.
    #[error("gateway {gateway} seq {seq}: stored hash {stored}, received {received} (tampering)")]
    Tampering {
        /// The gateway.
        gateway: GatewayId,
        /// The seq.
        seq: u64,
        /// Hex of the stored hash.
        stored: String,
        /// Hex of the received hash.
        received: String,
    },
    /// The record's `prev` does not match the stored neighbour.
    #[error("gateway {gateway} seq {seq}: chain broken (prev {prev}, expected {expected})")]
    BrokenChain {
        /// The gateway.
        gateway: GatewayId,
        /// The seq whose link fails.
        seq: u64,
        /// Hex of the `prev` carried.
        prev: String,
        /// Hex of the hash it should have been.
        expected: String,
    },
    /// Too far past the first missing seq to hold.
    #[error("gateway {gateway} seq {seq} is more than {MAX_AHEAD} past missing seq {missing}")]
    TooFarAhead {
        /// The gateway.
        gateway: GatewayId,
        /// The seq received.
        seq: u64,
        /// The first missing seq.
        missing: u64,
    },
}

#[derive(Debug, Clone, Default)]
struct GatewayLog {
    /// seq → (hash, prev) of every stored record.
    entries: BTreeMap<u64, ([u8; 32], [u8; 32])>,
    /// The first seq not yet stored (everything below is).
    next: u64,
}

/// The hub's view of every gateway's ledger.
#[derive(Debug, Clone, Default)]
pub struct Inbox {
    gateways: BTreeMap<GatewayId, GatewayLog>,
}

impl Inbox {
    /// An empty inbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Decides what to do with a received record of `gateway`.
    pub fn receive(
        &mut self,
        gateway: &GatewayId,
        entry: &EntryHeader,
    ) -> Result<Received, InboxError> {
        let log = self.gateways.entry(gateway.clone()).or_default();
        if let Some((stored, _)) = log.entries.get(&entry.seq) {
            if *stored == entry.hash {
                return Ok(Received::Duplicate);
            }
            return Err(InboxError::Tampering {
                gateway: gateway.clone(),
                seq: entry.seq,
                stored: hex::encode(stored),
                received: hex::encode(entry.hash),
            });
        }
        if entry.seq > log.next.saturating_add(MAX_AHEAD) {
            return Err(InboxError::TooFarAhead {
                gateway: gateway.clone(),
                seq: entry.seq,
                missing: log.next,
            });
        }
        let before = if entry.seq == 0 {
            Some([0u8; 32])
        } else {
            log.entries.get(&(entry.seq - 1)).map(|(h, _)| *h)
        };
        if let Some(expected) = before
            && expected != entry.prev
        {
            return Err(broken(gateway, entry.seq, &entry.prev, &expected));
        }
        if let Some((_, next_prev)) = log.entries.get(&entry.seq.saturating_add(1))
            && *next_prev != entry.hash
        {
            return Err(broken(
                gateway,
                entry.seq.saturating_add(1),
                next_prev,
                &entry.hash,
            ));
        }
        log.entries.insert(entry.seq, (entry.hash, entry.prev));
        let old_next = log.next;
        while log.entries.contains_key(&log.next) {
            log.next = log.next.saturating_add(1);
        }
        let covered = if log.next > old_next {
            log.entries
                .get(&(log.next - 1))
                .map(|(h, _)| (log.next - 1, *h))
        } else {
            None
        };
        let gap_from = (entry.seq > log.next).then_some(log.next);
        Ok(Received::New { covered, gap_from })
    }

    /// Loads a record the hub had already stored (at start). Same checks as [`Inbox::receive`].
    pub fn restore(&mut self, gateway: &GatewayId, entry: &EntryHeader) -> Result<(), InboxError> {
        self.receive(gateway, entry).map(|_| ())
    }

    /// What the hub can receipt for `gateway`: the last seq of the contiguous run and its hash.
    pub fn covered(&self, gateway: &GatewayId) -> Option<(u64, [u8; 32])> {
        let log = self.gateways.get(gateway)?;
        let last = log.next.checked_sub(1)?;
        log.entries.get(&last).map(|(h, _)| (last, *h))
    }

    /// The first seq the hub lacks for `gateway`, if the gateway's ledger (whose next seq is
    /// `gateway_next`, from its birth message) holds more: the hub should ask `resend-from` it.
    pub fn missing_from(&self, gateway: &GatewayId, gateway_next: u64) -> Option<u64> {
        let next = self.gateways.get(gateway).map_or(0, |l| l.next);
        (gateway_next > next).then_some(next)
    }

    /// Every gateway seen.
    pub fn gateways(&self) -> impl Iterator<Item = &GatewayId> {
        self.gateways.keys()
    }

    /// How many records are stored for `gateway`.
    pub fn stored(&self, gateway: &GatewayId) -> usize {
        self.gateways.get(gateway).map_or(0, |l| l.entries.len())
    }
}

fn broken(gateway: &GatewayId, seq: u64, prev: &[u8; 32], expected: &[u8; 32]) -> InboxError {
    InboxError::BrokenChain {
        gateway: gateway.clone(),
        seq,
        prev: hex::encode(prev),
        expected: hex::encode(expected),
    }
}

#[cfg(test)]
mod tests;

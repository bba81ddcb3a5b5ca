//! The gateway's outbox: which ledger entries to publish, which a receipt covers, what to re-send.
//!
//! The ledger **is** the outbox. Every entry the daemon has fsync'd to the ledger is handed to
//! [`Outbox::push`] as `(seq, hash, bytes)`; it stays here until a hub receipt
//! ([`VerifiedReceipt`]) covers it. The daemon polls [`Outbox::poll_publish`] for what to send
//! next and feeds back connection events, receipts, hub `resend-from` commands and the time:
//!
//! ```text
//!            push(seq)                  poll_publish()               on_receipt(≥ seq)
//!  ledger ──────────────▶ unsent ────────────────────────▶ sent ──────────────────────▶ dropped
//!                           ▲                                │
//!                           └── on_connected() / resend_from(seq) / tick() after resend_after
//! ```
//!
//! A receipt is accepted only if it names an entry this outbox holds and the hash matches that
//! entry's (a hub that stored something else must not silence the gateway). The age of the oldest
//! unreceipted entry gates new jobs ([`Outbox::admit_job`]): an appliance that cannot get its
//! release records to the hub stops making medicines. Time is passed in (Unix milliseconds); this
//! module does no I/O.

use std::collections::VecDeque;

use super::VerifiedReceipt;

/// Limits of the outbox.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OutboxConfig {
    /// New jobs are refused when the oldest unreceipted entry is older than this, ms.
    pub max_backlog_age_ms: u64,
    /// New jobs are refused when more entries than this are unreceipted.
    pub max_backlog_entries: usize,
    /// Sent entries still unreceipted after this long are sent again, ms.
    pub resend_after_ms: u64,
}

impl Default for OutboxConfig {
    fn default() -> Self {
        Self {
            max_backlog_age_ms: 24 * 3600 * 1000,
            max_backlog_entries: 10_000,
            resend_after_ms: 30_000,
        }
    }
}

/// Why the outbox refused an input, or refuses a new job.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// An entry was pushed out of order.
    #[error("ledger entry seq {got} pushed where seq {expected} was next")]
    OutOfOrder {
        /// The seq that should come next.
        expected: u64,
        /// The seq pushed.
        got: u64,
    },
    /// A receipt names a seq beyond the last entry pushed.
    #[error("receipt covers seq {seq}, but the ledger ends at {last:?}")]
    ReceiptAhead {
        /// The receipt's seq.
        seq: u64,
        /// The last seq held, if any.
        last: Option<u64>,
    },
    /// A receipt names one of our entries with another hash: the hub stored something else.
    #[error("receipt for seq {seq} has hash {receipt}, the ledger has {ledger}")]
    ReceiptHashMismatch {
        /// The seq.
        seq: u64,
        /// Hex of the receipt's hash.
        receipt: String,
        /// Hex of the ledger's hash.
        ledger: String,
    },
    /// The hub asked to re-send entries already receipted and dropped from the outbox.
    #[error("resend from seq {seq} asked, but entries before {first} are already receipted")]
    AlreadyReceipted {
        /// The seq asked for.
        seq: u64,
        /// The first seq still held.
        first: u64,
    },
    /// The unreceipted backlog is older than the policy allows: no new jobs.
    #[error("oldest unreceipted entry (seq {seq}) is {age_ms} ms old, limit {limit_ms} ms")]
    BacklogTooOld {
        /// Its seq.
        seq: u64,
        /// Its age.
        age_ms: u64,
        /// The limit.
        limit_ms: u64,
    },
    /// Too many entries are unreceipted: no new jobs.
    #[error("{count} unreceipted entries, limit {limit}")]
    BacklogTooLong {
        /// How many.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// One entry to publish on `up/evt`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outgoing {
    /// Its seq.
    pub seq: u64,
    /// The sealed record bytes.
    pub bytes: Vec<u8>,
}

#[derive(Debug, Clone)]
struct Pending {
    seq: u64,
    hash: [u8; 32],
    bytes: Vec<u8>,
    recorded_ms: u64,
    sent_ms: Option<u64>,
}

/// The gateway's delivery state.
#[derive(Debug, Clone)]
pub struct Outbox {
    config: OutboxConfig,
    /// Unreceipted entries, contiguous and in seq order.
    pending: VecDeque<Pending>,
    /// Index into `pending` of the next entry to publish.
    cursor: usize,
    /// The seq the next pushed entry must have.
    next_seq: u64,
    /// The last receipt accepted: (seq, hash).
    receipted: Option<(u64, [u8; 32])>,
    /// A receipt covered something since the last [`Outbox::tick`]: the hub is alive and
    /// working through the backlog, so nothing is re-sent yet.
    progress: bool,
}

impl Outbox {
    /// An outbox whose next entry will be `next_seq`, everything before it already receipted
    /// (pass 0 for a fresh ledger; after a restart, one past the last receipted seq, then push
    /// the unreceipted entries read back from the ledger).
    pub fn new(config: OutboxConfig, next_seq: u64) -> Self {
        Self {
            config,
            pending: VecDeque::new(),
            cursor: 0,
            next_seq,
            receipted: None,
            progress: false,
        }
    }

    /// Adds an entry the ledger has durably written, at `recorded_ms`.
    pub fn push(
        &mut self,
        seq: u64,
        hash: [u8; 32],
        bytes: Vec<u8>,
        recorded_ms: u64,
    ) -> Result<(), DeliveryError> {
        if seq != self.next_seq {
            return Err(DeliveryError::OutOfOrder {
                expected: self.next_seq,
                got: seq,
            });
        }
        self.pending.push_back(Pending {
            seq,
            hash,
            bytes,
            recorded_ms,
            sent_ms: None,
        });
        self.next_seq = seq.saturating_add(1);
        Ok(())
    }

    /// The next entry to publish, if any, marking it sent at `now_ms`.
    pub fn poll_publish(&mut self, now_ms: u64) -> Option<Outgoing> {
        let entry = self.pending.get_mut(self.cursor)?;
        entry.sent_ms = Some(now_ms);
        self.cursor += 1;
        Some(Outgoing {
            seq: entry.seq,
            bytes: entry.bytes.clone(),
        })
    }

    /// A (re)connection: everything not receipted is published again, in order.
    pub fn on_connected(&mut self) {
        self.cursor = 0;
    }

    /// The hub asked for every entry from `seq` on.
    pub fn resend_from(&mut self, seq: u64) -> Result<(), DeliveryError> {
        let Some(first) = self.pending.front().map(|p| p.seq) else {
            // Nothing unreceipted: there is nothing to re-send, whatever was asked.
            return if seq < self.next_seq {
                Err(DeliveryError::AlreadyReceipted {
                    seq,
                    first: self.next_seq,
                })
            } else {
                Ok(())
            };
        };
        if seq < first {
            return Err(DeliveryError::AlreadyReceipted { seq, first });
        }
        let index = usize::try_from(seq - first).unwrap_or(usize::MAX);
        self.cursor = self.cursor.min(index.min(self.pending.len()));
        Ok(())
    }

    /// Accepts a verified receipt, dropping every entry it covers. Returns how many were dropped
    /// (0 for a stale or repeated receipt).
    pub fn on_receipt(&mut self, receipt: &VerifiedReceipt) -> Result<usize, DeliveryError> {
        let seq = receipt.seq();
        if seq >= self.next_seq {
            return Err(DeliveryError::ReceiptAhead {
                seq,
                last: self.next_seq.checked_sub(1),
            });
        }
        let Some(first) = self.pending.front().map(|p| p.seq) else {
            return Ok(0);
        };
        if seq < first {
            return Ok(0);
        }
        let covered = usize::try_from(seq - first)
            .unwrap_or(usize::MAX)
            .saturating_add(1);
        let ledger_hash = self
            .pending
            .get(covered - 1)
            .map(|p| p.hash)
            .unwrap_or_default();
        if ledger_hash != *receipt.hash() {
            return Err(DeliveryError::ReceiptHashMismatch {
                seq,
                receipt: hex::encode(receipt.hash()),
                ledger: hex::encode(ledger_hash),
            });
        }
        self.pending.drain(..covered);
        self.cursor = self.cursor.saturating_sub(covered);
        self.receipted = Some((seq, ledger_hash));
        self.progress = true;
        Ok(covered)
    }

    /// Time passes: entries sent more than `resend_after_ms` ago and still unreceipted are
    /// published again (a lost message, or a broker that forgot it). Returns true if it rewound.
    /// If receipts have advanced since the last tick, the hub is alive and working through a
    /// backlog: the sent entries are given another interval instead (re-sending them would only
    /// add duplicates to the hub's queue).
    pub fn tick(&mut self, now_ms: u64) -> bool {
        if std::mem::take(&mut self.progress) {
            for p in self.pending.iter_mut().take(self.cursor) {
                if p.sent_ms.is_some() {
                    p.sent_ms = Some(now_ms);
                }
            }
            return false;
        }
        let stale = self.pending.iter().take(self.cursor).position(|p| {
            p.sent_ms
                .is_some_and(|t| now_ms.saturating_sub(t) >= self.config.resend_after_ms)
        });
        match stale {
            Some(index) => {
                self.cursor = index;
                true
            }
            None => false,
        }
    }

    /// When [`Outbox::tick`] should next be called, if anything sent awaits a receipt.
    pub fn next_tick_ms(&self) -> Option<u64> {
        self.pending
            .iter()
            .take(self.cursor)
            .filter_map(|p| p.sent_ms)
            .min()
            .map(|t| t.saturating_add(self.config.resend_after_ms))
    }

    /// Whether a new job may be accepted now: refused when the unreceipted backlog is too old or
    /// too long.
    pub fn admit_job(&self, now_ms: u64) -> Result<(), DeliveryError> {
        if self.pending.len() > self.config.max_backlog_entries {
            return Err(DeliveryError::BacklogTooLong {
                count: self.pending.len(),
                limit: self.config.max_backlog_entries,
            });
        }
        if let Some(oldest) = self.pending.front() {
            let age_ms = now_ms.saturating_sub(oldest.recorded_ms);
            if age_ms > self.config.max_backlog_age_ms {
                return Err(DeliveryError::BacklogTooOld {
                    seq: oldest.seq,
                    age_ms,
                    limit_ms: self.config.max_backlog_age_ms,
                });
            }
        }
        Ok(())
    }

    /// Age of the oldest unreceipted entry, ms.
    pub fn oldest_unreceipted_age_ms(&self, now_ms: u64) -> Option<u64> {
        self.pending
            .front()
            .map(|p| now_ms.saturating_sub(p.recorded_ms))
    }

    /// Number of unreceipted entries.
    pub fn backlog(&self) -> usize {
        self.pending.len()
    }

    /// The last receipt accepted in this run: (seq, hash).
    pub fn receipted(&self) -> Option<(u64, [u8; 32])> {
        self.receipted
    }

    /// The seq the next pushed entry must have.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }
}

#[cfg(test)]
mod tests;

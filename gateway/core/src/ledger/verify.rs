//! Verifying a ledger: signatures, the hash chain, counters, job transitions and checkpoint quotes.
//!
//! [`Verifier`] is fed record bytes in order and stops at the first bad one, returning a
//! [`LedgerError`] that names its index and the [`Fault`]. What it trusts comes from
//! [`LedgerTrust`]: the gateway id, the event key and attestation key pinned at enrollment, and the
//! hub's golden measurements. Fields left `None` fall back to what the ledger's first
//! `gateway-start` record declares (self-declared keys: the chain is still checked, but the report
//! says the keys were not pinned). Records signed in insecure development mode are refused unless
//! the trust allows them, and are always counted and reported. This module does no I/O.

use std::collections::BTreeMap;

use super::chain::ChainHead;
use super::record::{Record, RecordError, record_hash};
use super::{EventKind, JobStage, StartBody};
use crate::attest::quote::{ALG_SHA256, ClockInfo, QuoteExpectation, verify_quote};
use crate::attest::{GoldenValues, MeasurementError, PcrSelection, QuoteError};
use crate::cbor;
use crate::envelope::{EnvelopeError, KeyId, PublicKey, RoleKeys};

/// The PCR the gateway measures its software state into by default.
pub const DEFAULT_APP_PCR: u8 = 15;
/// Most distinct jobs whose state one verification tracks.
pub const MAX_TRACKED_JOBS: usize = 1 << 20;

/// What the verifier trusts.
#[derive(Debug, Clone)]
pub struct LedgerTrust {
    /// The gateway the ledger must belong to (else: the first record's).
    pub gateway_id: Option<String>,
    /// The pinned event-signing key (else: declared by the first start record).
    pub event_key: Option<PublicKey>,
    /// The pinned attestation key (else: declared by the first start record).
    pub attestation_key: Option<PublicKey>,
    /// Golden measurements every checkpoint's event log must match (else: not checked).
    pub golden: Option<GoldenValues>,
    /// The application PCR.
    pub app_pcr: u8,
    /// Accept records signed in insecure development mode.
    pub allow_insecure: bool,
}

impl Default for LedgerTrust {
    fn default() -> Self {
        Self {
            gateway_id: None,
            event_key: None,
            attestation_key: None,
            golden: None,
            app_pcr: DEFAULT_APP_PCR,
            allow_insecure: false,
        }
    }
}

/// Why a record fails verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Fault {
    /// The frame holding it is cut short (a torn write not yet recovered, or truncation).
    #[error("record is truncated")]
    Truncated,
    /// The bytes are not a ledger record.
    #[error(transparent)]
    Malformed(#[from] RecordError),
    /// Its signature is not by the gateway's event key, or does not verify.
    #[error("signature: {0}")]
    Signature(#[source] EnvelopeError),
    /// Out of sequence (deleted, reordered or inserted record).
    #[error("seq {found} where {expected} was expected")]
    Seq {
        /// The expected seq.
        expected: u64,
        /// The seq found.
        found: u64,
    },
    /// `prev` is not the hash of the previous record (edited or spliced record).
    #[error(
        "prev {} is not the previous record's hash {}",
        hex::encode(found),
        hex::encode(expected)
    )]
    Prev {
        /// Hash of the previous record.
        expected: [u8; 32],
        /// `prev` in this record.
        found: [u8; 32],
    },
    /// Written by another gateway.
    #[error("record of gateway {found:?} in the ledger of {expected:?}")]
    Gateway {
        /// The ledger's gateway.
        expected: String,
        /// The record's gateway.
        found: String,
    },
    /// The ledger does not open with a gateway start.
    #[error("the first record is not a gateway start")]
    FirstNotStart,
    /// A gateway start whose body is not a valid [`StartBody`].
    #[error("gateway start body is malformed")]
    BadStartBody,
    /// A start declares another key than the pinned (or first declared) one.
    #[error("gateway start declares key {found} instead of {expected}")]
    KeyChanged {
        /// The trusted key.
        expected: KeyId,
        /// The declared key.
        found: KeyId,
    },
    /// The TPM counter went back, skipped a bump, or moved without one.
    #[error("counter {found} after {previous} ({rule})")]
    Counter {
        /// The previous record's counter.
        previous: u64,
        /// This record's counter.
        found: u64,
        /// Which rule: "must increase" or "must not change".
        rule: &'static str,
    },
    /// Signed in insecure development mode, which the trust does not allow.
    #[error("record is signed in INSECURE development mode (software key)")]
    Insecure,
    /// The insecure marker differs from the mode the gateway started in.
    #[error("insecure marker {found} in a ledger started with insecure = {started}")]
    ModeMismatch {
        /// The mode declared at start.
        started: bool,
        /// This record's marker.
        found: bool,
    },
    /// A secure checkpoint without a quote, or with no attestation key to check it.
    #[error("checkpoint carries no verifiable quote")]
    MissingQuote,
    /// The checkpoint's quote does not verify.
    #[error("quote: {0}")]
    Quote(#[source] QuoteError),
    /// The checkpoint's event log does not replay or does not match the golden values.
    #[error("measurements: {0}")]
    Measurement(#[source] MeasurementError),
    /// The TPM clock went back within one TPM reset.
    #[error("TPM clock went back from {previous} to {found} within one reset")]
    ClockWentBack {
        /// The previous quote's clock.
        previous: u64,
        /// This quote's clock.
        found: u64,
    },
    /// A job moved to a stage its lifecycle does not allow.
    #[error("job {job:?}: {} → {} is not an allowed transition", from.map_or("(new)", |s| s.as_str()), to.as_str())]
    Transition {
        /// The job.
        job: String,
        /// Its stage before.
        from: Option<JobStage>,
        /// The stage this record moves it to.
        to: JobStage,
    },
    /// A job event without a job id, or a gateway event with one.
    #[error("event {} with job id {job:?}", kind.as_str())]
    JobId {
        /// The event kind.
        kind: EventKind,
        /// The job id present.
        job: Option<String>,
    },
    /// More distinct jobs than [`MAX_TRACKED_JOBS`].
    #[error("more than {MAX_TRACKED_JOBS} jobs")]
    TooManyJobs,
}

impl Fault {
    /// A stable, machine-readable code for this fault (CLI `--json`, hub reports).
    pub fn code(&self) -> &'static str {
        match self {
            Self::Truncated => "truncated",
            Self::Malformed(_) => "malformed",
            Self::Signature(_) => "bad-signature",
            Self::Seq { .. } => "out-of-sequence",
            Self::Prev { .. } => "chain-broken",
            Self::Gateway { .. } => "foreign-gateway",
            Self::FirstNotStart => "first-not-start",
            Self::BadStartBody => "bad-start-body",
            Self::KeyChanged { .. } => "key-changed",
            Self::Counter { .. } => "counter",
            Self::Insecure => "insecure",
            Self::ModeMismatch { .. } => "mode-mismatch",
            Self::MissingQuote => "missing-quote",
            Self::Quote(_) => "bad-quote",
            Self::Measurement(_) => "measurement",
            Self::ClockWentBack { .. } => "clock-went-back",
            Self::Transition { .. } => "illegal-transition",
            Self::JobId { .. } => "job-id",
            Self::TooManyJobs => "too-many-jobs",
        }
    }
}

impl JobStage {
    /// The kebab-case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Verified => "verified",
            Self::Printing => "printing",
            Self::Printed => "printed",
            Self::Measured => "measured",
            Self::Released => "released",
            Self::Rejected => "rejected",
            Self::Quarantined => "quarantined",
            Self::Aborted => "aborted",
        }
    }
}

/// The first bad record: its index (position in the ledger, from 0) and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("record {index}: {fault}")]
pub struct LedgerError {
    /// Position of the first bad record.
    pub index: u64,
    /// What is wrong with it.
    pub fault: Fault,
}

/// A ledger that verified. Private fields: only [`Verifier::finish`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedLedger {
    head: ChainHead,
    gateway: Option<String>,
    event_key: Option<KeyId>,
    keys_pinned: bool,
    records: u64,
    checkpoints: u64,
    insecure_records: u64,
    covered: u64,
    jobs: BTreeMap<String, JobStage>,
}

impl VerifiedLedger {
    /// The head to resume writing from.
    pub fn head(&self) -> ChainHead {
        self.head
    }
    /// The gateway id, `None` for an empty ledger.
    pub fn gateway(&self) -> Option<&str> {
        self.gateway.as_deref()
    }
    /// The event key that signed every record.
    pub fn event_key(&self) -> Option<KeyId> {
        self.event_key
    }
    /// Whether the keys came from the trust (pinned) rather than from the ledger itself.
    pub fn keys_pinned(&self) -> bool {
        self.keys_pinned
    }
    /// Number of records.
    pub fn records(&self) -> u64 {
        self.records
    }
    /// Number of checkpoints.
    pub fn checkpoints(&self) -> u64 {
        self.checkpoints
    }
    /// Records carrying the insecure marker.
    pub fn insecure_records(&self) -> u64 {
        self.insecure_records
    }
    /// Records up to and including the last checkpoint (covered by its quote and signature).
    pub fn covered_by_checkpoint(&self) -> u64 {
        self.covered
    }
    /// Each job's last stage.
    pub fn jobs(&self) -> &BTreeMap<String, JobStage> {
        &self.jobs
    }
}

/// Streaming verifier: feed each record's bytes with [`Verifier::push`].
#[derive(Debug)]
pub struct Verifier {
    trust: LedgerTrust,
    state: VerifiedLedger,
    ak: Option<PublicKey>,
    key: Option<PublicKey>,
    started_insecure: Option<bool>,
    last_clock: Option<ClockInfo>,
}

impl Verifier {
    /// A verifier for one ledger.
    pub fn new(trust: LedgerTrust) -> Self {
        let keys_pinned = trust.event_key.is_some();
        Self {
            key: trust.event_key.clone(),
            ak: trust.attestation_key.clone(),
            state: VerifiedLedger {
                head: ChainHead::EMPTY,
                gateway: trust.gateway_id.clone(),
                event_key: trust.event_key.as_ref().map(PublicKey::key_id),
                keys_pinned,
                records: 0,
                checkpoints: 0,
                insecure_records: 0,
                covered: 0,
                jobs: BTreeMap::new(),
            },
            trust,
            started_insecure: None,
            last_clock: None,
        }
    }

    /// The index the next record will have.
    pub fn next_index(&self) -> u64 {
        self.state.records
    }

    /// Reports that the ledger ends in a truncated record.
    pub fn truncated(&self) -> LedgerError {
        LedgerError {
            index: self.state.records,
            fault: Fault::Truncated,
        }
    }

    /// Checks the next record.
    pub fn push(&mut self, bytes: &[u8]) -> Result<(), LedgerError> {
        let index = self.state.records;
        self.check(bytes)
            .map_err(|fault| LedgerError { index, fault })?;
        Ok(())
    }

    /// Ends verification.
    pub fn finish(self) -> VerifiedLedger {
        self.state
    }

    fn check(&mut self, bytes: &[u8]) -> Result<(), Fault> {
        let record = Record::decode(bytes)?;
        let head = self.state.head;
        if record.seq() != head.next_seq {
            return Err(Fault::Seq {
                expected: head.next_seq,
                found: record.seq(),
            });
        }
        if record.prev() != head.hash {
            return Err(Fault::Prev {
                expected: head.hash,
                found: record.prev(),
            });
        }
        match &self.state.gateway {
            Some(gw) if gw != record.gateway() => {
                return Err(Fault::Gateway {
                    expected: gw.clone(),
                    found: record.gateway().to_owned(),
                });
            }
            _ => self.state.gateway = Some(record.gateway().to_owned()),
        }
        let bumps = match &record {
            Record::Entry { payload, .. } => {
                if head.next_seq == 0 && payload.evt.kind != EventKind::GatewayStart {
                    return Err(Fault::FirstNotStart);
                }
                if payload.evt.kind == EventKind::GatewayStart {
                    self.adopt_start(&payload.evt.body, payload.insecure)?;
                }
                payload.evt.kind == EventKind::GatewayStart
            }
            Record::Checkpoint { .. } => {
                if head.next_seq == 0 {
                    return Err(Fault::FirstNotStart);
                }
                true
            }
        };
        self.check_signature(&record)?;
        self.check_mode(record.insecure())?;
        check_counter(head.counter, record.counter(), bumps, head.next_seq == 0)?;
        match &record {
            Record::Entry { payload, .. } => {
                self.check_job(payload.evt.kind, payload.evt.job.as_deref())?;
            }
            Record::Checkpoint { payload, .. } => {
                if !payload.insecure {
                    self.check_quote(payload)?;
                }
                self.state.checkpoints += 1;
                self.state.covered = head.next_seq + 1;
            }
        }
        if record.insecure() {
            self.state.insecure_records += 1;
        }
        self.state.records += 1;
        self.state.head = ChainHead {
            next_seq: head.next_seq + 1,
            hash: record_hash(bytes),
            counter: record.counter(),
        };
        Ok(())
    }

    fn adopt_start(&mut self, body: &[u8], insecure: bool) -> Result<(), Fault> {
        let start: StartBody =
            cbor::from_slice(body, super::MAX_BODY_LEN).map_err(|_| Fault::BadStartBody)?;
        let declared = PublicKey::from_sec1(&start.key).map_err(|_| Fault::BadStartBody)?;
        match &self.key {
            Some(k) if k.key_id() != declared.key_id() => {
                return Err(Fault::KeyChanged {
                    expected: k.key_id(),
                    found: declared.key_id(),
                });
            }
            Some(_) => {}
            None => {
                self.state.event_key = Some(declared.key_id());
                self.key = Some(declared);
            }
        }
        if let Some(ak) = &start.ak {
            let declared = PublicKey::from_sec1(ak).map_err(|_| Fault::BadStartBody)?;
            match &self.ak {
                Some(k) if k.key_id() != declared.key_id() => {
                    return Err(Fault::KeyChanged {
                        expected: k.key_id(),
                        found: declared.key_id(),
                    });
                }
                Some(_) => {}
                None => self.ak = Some(declared),
            }
        }
        match self.started_insecure {
            Some(started) if started != insecure => Err(Fault::ModeMismatch {
                started,
                found: insecure,
            }),
            _ => {
                self.started_insecure = Some(insecure);
                Ok(())
            }
        }
    }

    fn check_signature(&self, record: &Record) -> Result<(), Fault> {
        let Some(key) = &self.key else {
            return Err(Fault::FirstNotStart);
        };
        let keys = [key.clone()];
        record
            .envelope()
            .clone()
            .verify(&RoleKeys {
                keys: &keys,
                threshold: 1,
            })
            .map(|_| ())
            .map_err(Fault::Signature)
    }

    fn check_mode(&self, insecure: bool) -> Result<(), Fault> {
        if let Some(started) = self.started_insecure
            && started != insecure
        {
            return Err(Fault::ModeMismatch {
                started,
                found: insecure,
            });
        }
        if insecure && !self.trust.allow_insecure {
            return Err(Fault::Insecure);
        }
        Ok(())
    }

    fn check_job(&mut self, kind: EventKind, job: Option<&str>) -> Result<(), Fault> {
        match (kind.stage(), job) {
            (None, None) => Ok(()),
            (Some(to), Some(job)) => {
                let from = self.state.jobs.get(job).copied();
                if !JobStage::allows(from, to) {
                    return Err(Fault::Transition {
                        job: job.to_owned(),
                        from,
                        to,
                    });
                }
                if from.is_none() && self.state.jobs.len() >= MAX_TRACKED_JOBS {
                    return Err(Fault::TooManyJobs);
                }
                self.state.jobs.insert(job.to_owned(), to);
                Ok(())
            }
            (_, job) => Err(Fault::JobId {
                kind,
                job: job.map(str::to_owned),
            }),
        }
    }

    fn check_quote(&mut self, payload: &super::CheckpointPayload) -> Result<(), Fault> {
        let (Some(quote), Some(ak)) = (&payload.quote, &self.ak) else {
            return Err(Fault::MissingQuote);
        };
        let pcr = self.trust.app_pcr;
        let value = payload.log.replay(pcr).map_err(Fault::Measurement)?;
        if let Some(golden) = &self.trust.golden {
            payload
                .log
                .check_golden(golden)
                .map_err(Fault::Measurement)?;
        }
        let selection = [PcrSelection {
            hash: ALG_SHA256,
            pcrs: vec![pcr],
        }];
        let attested = verify_quote(
            &quote.attest,
            &quote.sig,
            ak,
            &QuoteExpectation {
                qualifying_data: &payload.prev,
                selection: &selection,
                pcr_values: &[value],
            },
        )
        .map_err(Fault::Quote)?;
        let clock = attested.info().clock;
        if let Some(last) = self.last_clock
            && last.reset_count == clock.reset_count
            && last.restart_count == clock.restart_count
            && clock.clock < last.clock
        {
            return Err(Fault::ClockWentBack {
                previous: last.clock,
                found: clock.clock,
            });
        }
        self.last_clock = Some(clock);
        Ok(())
    }
}

fn check_counter(previous: u64, found: u64, bumps: bool, first: bool) -> Result<(), Fault> {
    if first {
        return Ok(());
    }
    if bumps && found <= previous {
        return Err(Fault::Counter {
            previous,
            found,
            rule: "must increase",
        });
    }
    if !bumps && found != previous {
        return Err(Fault::Counter {
            previous,
            found,
            rule: "must not change",
        });
    }
    Ok(())
}

/// Verifies a whole ledger given as record bytes in order.
pub fn verify_records<'a>(
    records: impl IntoIterator<Item = &'a [u8]>,
    trust: LedgerTrust,
) -> Result<VerifiedLedger, LedgerError> {
    let mut verifier = Verifier::new(trust);
    for r in records {
        verifier.push(r)?;
    }
    Ok(verifier.finish())
}

#[cfg(test)]
mod tests;

//! The gateway's ledger service: opens the store, checks what is there, and appends sealed events.
//!
//! [`Ledger::open`] recovers the store (torn tail dropped), verifies every existing record against
//! this gateway's own keys (fail closed: a ledger that does not verify is never appended to),
//! resumes the chain, bumps the counter and records a `gateway-start` declaring the keys (and an
//! `insecure-mode` event when running on a software key). [`Ledger::record`] seals one event with
//! the event key, writes and fsyncs it, and only then commits it to the chain and returns: the
//! caller lets the event take effect after that. A checkpoint (counter bump + TPM quote over the
//! chain head) follows every job's final event and every `checkpoint_every` records, so a job costs
//! a bounded number of TPM operations.
//!
//! Keys, counter and quotes come through [`GatewayKeys`] (the `tpm` module, or the insecure
//! software identity); file I/O is the `store` module's; format and verification are the core's.

use std::path::Path;

use dosegate_core::attest::{Component, EventLog};
use dosegate_core::envelope::{PublicKey, SignError, Signer, SoftwareKey};
use dosegate_core::ledger::{
    Chain, ChainError, ChainHead, Event, EventKind, JobStage, LedgerError, LedgerTrust, Quoter,
    StartBody, Verifier,
};

use crate::store::{Recovery, Store, StoreError, WritePattern};
use crate::tpm::{Tpm, TpmConfig, TpmError};

/// The keys and TPM services the ledger needs.
pub trait GatewayKeys: Signer {
    /// The attestation key, `None` in insecure mode.
    fn attestation_key(&self) -> Option<PublicKey>;
    /// Bumps the monotonic counter and returns its new value (strictly above `current`).
    fn bump_counter(&self, current: u64) -> Result<u64, SignError>;
    /// The quoter for checkpoints, `None` in insecure mode.
    fn quoter(&self) -> Option<&dyn Quoter>;
    /// Whether this is the insecure development identity.
    fn insecure(&self) -> bool;
    /// The application PCR's event log, carried in checkpoints.
    fn event_log(&self) -> EventLog;
    /// The application PCR.
    fn app_pcr(&self) -> u8;
}

/// The insecure development identity: a software event key, a software counter, no quotes.
/// Every record it signs carries the insecure marker; the daemon logs a warning at every start.
#[derive(Debug)]
pub struct InsecureIdentity {
    key: SoftwareKey,
}

impl InsecureIdentity {
    /// Wraps a software key.
    pub fn new(key: SoftwareKey) -> Self {
        tracing::warn!(
            key = %key.public_key().key_id(),
            "INSECURE development mode: ledger events are signed by a software key, not the TPM; \
             they are marked insecure and no verifier accepts them by default"
        );
        Self { key }
    }
}

impl Signer for InsecureIdentity {
    fn public_key(&self) -> PublicKey {
        self.key.public_key()
    }
    fn sign(&self, message: &[u8]) -> Result<[u8; 64], SignError> {
        self.key.sign(message)
    }
}

impl GatewayKeys for InsecureIdentity {
    fn attestation_key(&self) -> Option<PublicKey> {
        None
    }
    fn bump_counter(&self, current: u64) -> Result<u64, SignError> {
        Ok(current + 1)
    }
    fn quoter(&self) -> Option<&dyn Quoter> {
        None
    }
    fn insecure(&self) -> bool {
        true
    }
    fn event_log(&self) -> EventLog {
        EventLog::default()
    }
    fn app_pcr(&self) -> u8 {
        dosegate_core::ledger::verify::DEFAULT_APP_PCR
    }
}

/// How the gateway signs. There is no default and no fallback: a gateway configured for the TPM
/// whose TPM is missing gets an error, never a software key (fail closed).
#[derive(Debug)]
pub enum SigningIdentity {
    /// Keys, counter and quotes in the TPM.
    Tpm(TpmConfig),
    /// INSECURE development mode: a software key, explicitly configured.
    InsecureDevelopment(SoftwareKey),
}

/// Opens the configured identity.
pub fn open_identity(choice: SigningIdentity) -> Result<Box<dyn GatewayKeys>, TpmError> {
    match choice {
        SigningIdentity::Tpm(config) => Ok(Box::new(Tpm::open(&config)?)),
        SigningIdentity::InsecureDevelopment(key) => Ok(Box::new(InsecureIdentity::new(key))),
    }
}

/// Measures the gateway's software state into the application PCR at start: adopts the event log
/// kept in `log_path` (see [`Tpm::adopt_log`]), then for each component appends the measurement to
/// the log, writes it durably, and only then extends the PCR (a crash in between leaves a logged
/// but unextended entry, which the next adoption drops). Returns the log now in force.
pub fn measure_components(
    tpm: &Tpm,
    log_path: &Path,
    components: &[(Component, &[u8])],
) -> Result<EventLog, MeasureError> {
    let digests: Vec<(Component, [u8; 32])> = components
        .iter()
        .map(|(what, bytes)| (*what, tpm.measurement(*what, bytes).digest))
        .collect();
    measure_digests(tpm, log_path, &digests)
}

/// [`measure_components`] for components already hashed (SHA-256), so a large file such as the
/// gateway binary is hashed as a stream and never held in memory.
pub fn measure_digests(
    tpm: &Tpm,
    log_path: &Path,
    components: &[(Component, [u8; 32])],
) -> Result<EventLog, MeasureError> {
    let stored = crate::store::load_event_log(log_path)?;
    tpm.adopt_log(stored)?;
    measure_more(tpm, log_path, components)
}

/// Measures more components after [`measure_digests`] adopted the log (a policy or model that
/// arrives while the gateway runs): appends each to the log the TPM holds, writes it durably, and
/// only then extends the PCR. Returns the log now in force.
pub fn measure_more(
    tpm: &Tpm,
    log_path: &Path,
    components: &[(Component, [u8; 32])],
) -> Result<EventLog, MeasureError> {
    let mut log = tpm.log();
    for (what, digest) in components {
        let m = dosegate_core::attest::Measurement {
            pcr: GatewayKeys::app_pcr(tpm),
            what: *what,
            digest: *digest,
        };
        log.0.push(m.clone());
        crate::store::save_event_log(log_path, &log)?;
        tpm.extend(&m)?;
    }
    Ok(log)
}

/// Why measuring failed.
#[derive(Debug, thiserror::Error)]
pub enum MeasureError {
    /// The event-log file could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The TPM refused, or the log does not match the PCR.
    #[error(transparent)]
    Tpm(#[from] TpmError),
}

/// Why the ledger service failed.
#[derive(Debug, thiserror::Error)]
pub enum LedgerServiceError {
    /// The store failed or is damaged.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The existing ledger does not verify under this gateway's keys.
    #[error("existing ledger does not verify: {0}")]
    Verify(#[from] LedgerError),
    /// Sealing failed (signing, quoting, bounds).
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// The counter could not be bumped.
    #[error("counter: {0}")]
    Counter(#[source] SignError),
    /// The event was recorded (it is durable at `seq`) but the checkpoint that follows failed.
    #[error("record {seq} is durable, but the checkpoint after it failed: {source}")]
    CheckpointAfter {
        /// The durable record.
        seq: u64,
        /// Why the checkpoint failed.
        #[source]
        source: Box<LedgerServiceError>,
    },
    /// The start body could not be encoded.
    #[error(transparent)]
    Cbor(#[from] dosegate_core::cbor::CborError),
}

/// Options of the ledger service.
#[derive(Debug, Clone)]
pub struct LedgerOptions {
    /// Size at which a new segment file is started.
    pub segment_bytes: u64,
    /// A checkpoint after at most this many records (besides one after each job's final event).
    pub checkpoint_every: u64,
    /// How frames are written (see [`WritePattern`]).
    pub pattern: WritePattern,
    /// The gateway software version recorded at start.
    pub version: String,
}

impl Default for LedgerOptions {
    fn default() -> Self {
        Self {
            segment_bytes: crate::store::DEFAULT_SEGMENT_BYTES,
            checkpoint_every: 64,
            pattern: WritePattern::Whole,
            version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// The open ledger of this gateway.
pub struct Ledger<'k> {
    store: Store,
    chain: Chain,
    keys: &'k dyn GatewayKeys,
    options: LedgerOptions,
    since_checkpoint: u64,
    recovery: Recovery,
    /// Records made durable since the last [`Ledger::take_written`] (for the fleet outbox),
    /// at most [`MAX_WRITTEN_KEPT`].
    written: std::collections::VecDeque<WrittenRecord>,
}

/// Most durable records kept for [`Ledger::take_written`] when nobody takes them.
pub const MAX_WRITTEN_KEPT: usize = 4096;

/// A record the ledger has made durable: what the fleet link's outbox needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WrittenRecord {
    /// Its seq.
    pub seq: u64,
    /// SHA-256 of its bytes (the next record's `prev`).
    pub hash: [u8; 32],
    /// The sealed record.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Ledger<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ledger")
            .field("head", &self.chain.head())
            .field("insecure", &self.chain.insecure())
            .finish_non_exhaustive()
    }
}

impl<'k> Ledger<'k> {
    /// Opens the ledger in `dir` for `gateway_id`, recovering and verifying what is there, and
    /// records a gateway start at `time_ms`.
    pub fn open(
        dir: &Path,
        gateway_id: &str,
        keys: &'k dyn GatewayKeys,
        options: LedgerOptions,
        time_ms: u64,
    ) -> Result<Self, LedgerServiceError> {
        let (store, records, recovery) = Store::open(dir, options.segment_bytes, options.pattern)?;
        let mut verifier = Verifier::new(LedgerTrust {
            gateway_id: Some(gateway_id.to_owned()),
            event_key: Some(keys.public_key()),
            attestation_key: keys.attestation_key(),
            golden: None,
            app_pcr: keys.app_pcr(),
            allow_insecure: keys.insecure(),
        });
        for r in &records {
            verifier.push(r)?;
        }
        let head = verifier.finish().head();
        let chain = Chain::new(gateway_id, head, keys.insecure())?;
        let mut ledger = Self {
            store,
            chain,
            keys,
            options,
            since_checkpoint: 0,
            recovery,
            written: std::collections::VecDeque::new(),
        };
        ledger.start(time_ms)?;
        Ok(ledger)
    }

    fn start(&mut self, time_ms: u64) -> Result<(), LedgerServiceError> {
        let body = StartBody {
            ak: self.keys.attestation_key().map(|k| k.to_sec1()),
            key: self.keys.public_key().to_sec1(),
            ver: self.options.version.clone(),
        };
        let counter = self
            .keys
            .bump_counter(self.chain.head().counter)
            .map_err(LedgerServiceError::Counter)?;
        let event = Event {
            job: None,
            body: dosegate_core::cbor::to_vec(&body)?,
            kind: EventKind::GatewayStart,
        };
        let sealed = self.chain.seal_entry(event, time_ms, counter, self.keys)?;
        self.write(&sealed)?;
        if self.keys.insecure() {
            let event = Event {
                job: None,
                body: Vec::new(),
                kind: EventKind::InsecureMode,
            };
            let sealed = self.chain.seal_entry(event, time_ms, counter, self.keys)?;
            self.write(&sealed)?;
        }
        Ok(())
    }

    fn write(
        &mut self,
        sealed: &dosegate_core::ledger::SealedRecord,
    ) -> Result<u64, LedgerServiceError> {
        self.store.append(sealed.bytes())?;
        self.chain.commit(sealed)?;
        self.since_checkpoint += 1;
        if self.written.len() >= MAX_WRITTEN_KEPT {
            self.written.pop_front();
        }
        self.written.push_back(WrittenRecord {
            seq: sealed.seq(),
            hash: sealed.head_after().hash,
            bytes: sealed.bytes().to_vec(),
        });
        Ok(sealed.seq())
    }

    /// Seals, writes and fsyncs one event; returns its seq once it is durable. A job's final
    /// event (released, rejected, quarantined, aborted) is followed by a checkpoint.
    pub fn record(&mut self, event: Event, time_ms: u64) -> Result<u64, LedgerServiceError> {
        let final_event = matches!(
            event.kind.stage(),
            Some(
                JobStage::Released | JobStage::Rejected | JobStage::Quarantined | JobStage::Aborted
            )
        );
        let sealed = self
            .chain
            .seal_entry(event, time_ms, self.chain.head().counter, self.keys)?;
        let seq = self.write(&sealed)?;
        if final_event || self.since_checkpoint >= self.options.checkpoint_every {
            self.checkpoint(time_ms)
                .map_err(|e| LedgerServiceError::CheckpointAfter {
                    seq,
                    source: Box::new(e),
                })?;
        }
        Ok(seq)
    }

    /// Bumps the counter and writes a checkpoint quoting the current chain head.
    pub fn checkpoint(&mut self, time_ms: u64) -> Result<u64, LedgerServiceError> {
        let counter = self
            .keys
            .bump_counter(self.chain.head().counter)
            .map_err(LedgerServiceError::Counter)?;
        let sealed = self.chain.seal_checkpoint(
            time_ms,
            counter,
            self.keys.event_log(),
            self.keys.quoter(),
            self.keys,
        )?;
        let seq = self.write(&sealed)?;
        self.since_checkpoint = 0;
        Ok(seq)
    }

    /// The chain head.
    pub fn head(&self) -> ChainHead {
        self.chain.head()
    }

    /// The records made durable since the last call, in seq order (the fleet outbox's input).
    pub fn take_written(&mut self) -> Vec<WrittenRecord> {
        self.written.drain(..).collect()
    }

    /// What recovery did when the ledger was opened.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dosegate_core::ledger::Fault;
    use dosegate_core::ledger::verify::verify_records;

    #[test]
    fn missing_tpm_is_an_error_not_a_software_fallback() {
        // Nothing listens on port 1: the TPM is absent.
        let choice = SigningIdentity::Tpm(TpmConfig {
            tcti: "swtpm:host=127.0.0.1,port=1".into(),
            app_pcr: 15,
            handles: crate::tpm::Handles::default(),
        });
        let Err(err) = open_identity(choice) else {
            panic!("a missing TPM must not yield a signer");
        };
        assert!(
            matches!(err, TpmError::Connect { .. } | TpmError::Command { .. }),
            "{err}"
        );
    }

    #[test]
    fn insecure_mode_marks_every_record_and_is_refused_by_default() {
        let dir = tempfile::tempdir().unwrap();
        let keys = open_identity(SigningIdentity::InsecureDevelopment(
            SoftwareKey::from_bytes(&[4; 32]).unwrap(),
        ))
        .unwrap();
        let mut ledger = Ledger::open(
            dir.path(),
            "dev-gw",
            keys.as_ref(),
            LedgerOptions::default(),
            1,
        )
        .unwrap();
        let event = Event {
            job: Some("j".into()),
            body: Vec::new(),
            kind: EventKind::Received,
        };
        ledger.record(event, 2).unwrap();
        ledger.checkpoint(3).unwrap();
        drop(ledger);
        let records = crate::store::read_dir(dir.path()).unwrap().records;
        let err =
            verify_records(records.iter().map(Vec::as_slice), LedgerTrust::default()).unwrap_err();
        assert_eq!((err.index, err.fault), (0, Fault::Insecure));
        let v = verify_records(
            records.iter().map(Vec::as_slice),
            LedgerTrust {
                allow_insecure: true,
                ..LedgerTrust::default()
            },
        )
        .unwrap();
        // start, insecure-mode, received, checkpoint: every one marked.
        assert_eq!(v.insecure_records(), 4);
        assert_eq!(v.records(), 4);
    }

    #[test]
    fn reopening_resumes_the_chain_and_refuses_a_foreign_ledger() {
        let dir = tempfile::tempdir().unwrap();
        let a = InsecureIdentity::new(SoftwareKey::from_bytes(&[4; 32]).unwrap());
        drop(Ledger::open(dir.path(), "gw", &a, LedgerOptions::default(), 1).unwrap());
        let again = Ledger::open(dir.path(), "gw", &a, LedgerOptions::default(), 2).unwrap();
        assert_eq!(again.head().next_seq, 4);
        drop(again);
        // Another key cannot continue this ledger.
        let b = InsecureIdentity::new(SoftwareKey::from_bytes(&[5; 32]).unwrap());
        assert!(matches!(
            Ledger::open(dir.path(), "gw", &b, LedgerOptions::default(), 3),
            Err(LedgerServiceError::Verify(_))
        ));
    }
}

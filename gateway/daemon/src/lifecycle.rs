//! The job lifecycle of the running gateway: one job at a time from the hub's signed message to
//! its sealed release record, every transition one ledger event.
//!
//! [`JobRunner`] owns the ledger and the [`JobBook`] and drives the adapters: job verification
//! (core), the printer link ([`PrintStation`]) and release testing ([`MeasureStation`]). The
//! decisions are the core's (`job::authenticate`, `check_design_space`, `release::decide_job`);
//! this module only sequences them, records each outcome, and hands every durable record to the
//! fleet link. The devices sit behind traits so the sequencing is tested with the project's
//! simulators in process and the real adapters run unchanged in `dosegate run`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::time::{Duration, Instant};

use dosegate_core::fleet::metadata::RoleKeysInForce;
use dosegate_core::inference::ValidatedModel;
use dosegate_core::job::{
    self, DesignSpaceError, GatewayContext, HeldPolicy, JobError, JobLimits, VerifiedJob,
};
use dosegate_core::ledger::{Event, EventKind, JobStage};
use dosegate_core::lifecycle::{
    JobBook, LifecycleError, ReasonBody, ReceivedBody, RefusalBody, encode_body, intake_key,
};
use dosegate_core::policy::{Policy, Reason};
use dosegate_core::release::{self, UnitMeasurement};
use dosegate_core::stream::{AbortReason, CompletionSummary, StreamEvent};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tracing::{info, warn};

use crate::ledger::{Ledger, LedgerServiceError, WrittenRecord};

/// Largest policy file read from the policies directory.
pub const MAX_POLICY_BYTES: u64 = 256 * 1024;

/// A future the runner awaits (the stations are object-safe).
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + 'a>>;

/// What printing produced.
#[derive(Debug, Clone)]
pub struct PrintReport {
    /// Completed (every command ran exactly once) or why it stopped.
    pub outcome: Result<CompletionSummary, AbortReason>,
    /// The firmware identification, when the printer answered.
    pub firmware: Option<StreamEvent>,
    /// Seconds from opening the port to the outcome.
    pub seconds: f64,
}

/// The printer link as the lifecycle sees it.
pub trait PrintStation {
    /// Streams a verified job; `stop` resolving asks for a stop (hub abort, shutdown).
    fn print<'a>(
        &'a mut self,
        job: &'a VerifiedJob,
        policy: &'a Policy,
        stop: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, Result<PrintReport, String>>;
}

/// One unit's spectrum prediction and mass, as release testing produced them.
#[derive(Debug, Clone)]
pub struct Measurements {
    /// Per unit, in unit order (units never measured are absent).
    pub units: Vec<UnitMeasurement>,
    /// The model used.
    pub model: Option<dosegate_core::inference::model::ModelId>,
    /// Why measurement stopped early, if it did.
    pub incomplete: Option<String>,
}

/// Release testing as the lifecycle sees it.
pub trait MeasureStation {
    /// Measures `units` printed units of `job` with `model`.
    fn measure<'a>(
        &'a mut self,
        job_key: &'a str,
        units: u32,
        model: Option<&'a ValidatedModel>,
    ) -> BoxFuture<'a, Measurements>;
}

/// Where the runner finds what the gateway holds.
#[derive(Debug, Clone)]
pub struct Holdings {
    /// `<id>.toml` policies.
    pub policies_dir: PathBuf,
    /// `<id>.cbor` models.
    pub models_dir: PathBuf,
}

/// How a job ended, for the caller's log and the demo's summary.
#[derive(Debug, Clone, Serialize)]
pub struct JobReport {
    /// The ledger job key (the job id, or `intake-<seq>` for a refused intake).
    pub key: String,
    /// The final stage.
    pub stage: JobStage,
    /// Codes of the reasons, when refused, aborted or quarantined.
    pub codes: Vec<String>,
    /// Predicted dose per unit, mg (released or not).
    pub doses_mg: Vec<Option<f64>>,
    /// Milliseconds from arrival to the `verified` (or refusing) event being durable.
    pub verify_ms: f64,
    /// The ledger seq of the job's final event.
    pub seq: u64,
}

impl JobReport {
    /// The final stage as the ledger names it (`released`, `rejected`…).
    pub fn stage_name(&self) -> &'static str {
        self.stage.as_str()
    }
}

/// Why the runner itself failed (not a job's fault): the ledger could not be written, or a
/// transition the book refuses (a bug).
#[derive(Debug, thiserror::Error)]
pub enum RunnerError {
    /// The ledger refused a write.
    #[error(transparent)]
    Ledger(#[from] LedgerServiceError),
    /// The lifecycle refused a transition.
    #[error(transparent)]
    Lifecycle(#[from] LifecycleError),
    /// An event body could not be encoded.
    #[error(transparent)]
    Cbor(#[from] dosegate_core::cbor::CborError),
}

impl RunnerError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Ledger(_) => "ledger",
            Self::Lifecycle(e) => e.code(),
            Self::Cbor(_) => "event-encode",
        }
    }
}

/// Sequences jobs through the lifecycle and records every transition.
pub struct JobRunner<'k> {
    ledger: Ledger<'k>,
    book: JobBook,
    gateway_id: String,
    holdings: Holdings,
    limits: JobLimits,
    published: Vec<WrittenRecord>,
    closed_at_start: Vec<JobReport>,
    sink: Option<Sink<'k>>,
    /// Policies and models in force from signed fleet metadata (they take precedence over the
    /// files of the same id), as TOML / model bytes.
    fleet_policies: std::collections::BTreeMap<String, Vec<u8>>,
    fleet_models: std::collections::BTreeMap<String, Vec<u8>>,
}

/// Where the runner hands each record the moment it is durable (the fleet link's outbox).
pub type Sink<'k> = Box<dyn FnMut(WrittenRecord) + 'k>;

impl std::fmt::Debug for JobRunner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JobRunner")
            .field("gateway_id", &self.gateway_id)
            .field("open_jobs", &self.book.open_jobs())
            .finish_non_exhaustive()
    }
}

#[derive(Serialize)]
struct VerifiedBody<'a> {
    job_id: &'a str,
    seq: u64,
    gcode_sha256: String,
    policy: String,
    units: u32,
    dose_mg: f64,
    estimated_dose_mg: f64,
    commands: usize,
}

/// The `printing` event: streaming begins.
#[derive(Serialize)]
struct PrintingBody {
    commands: usize,
}

#[derive(Serialize)]
struct PrintedBody<'a> {
    summary: &'a CompletionSummary,
    firmware: Option<&'a StreamEvent>,
    seconds: f64,
}

#[derive(Serialize)]
struct AbortedBody<'a> {
    code: &'a str,
    reason: &'a AbortReason,
    firmware: Option<&'a StreamEvent>,
}

#[derive(Serialize)]
struct UnitBody {
    unit: u32,
    predicted: Option<f64>,
    quantity: Option<String>,
    t2: Option<f64>,
    q: Option<f64>,
    domain: Option<String>,
    mass_mg: Option<f64>,
    error: Option<String>,
}

#[derive(Serialize)]
struct MeasuredBody<'a> {
    model: Option<&'a dosegate_core::inference::model::ModelId>,
    units: Vec<UnitBody>,
    incomplete: Option<&'a str>,
}

impl<'k> JobRunner<'k> {
    /// Takes over an open ledger: rebuilds the book from its records and closes every job a
    /// crash left open (see [`JobBook::interrupted`]).
    pub fn new(
        ledger: Ledger<'k>,
        records: &[Vec<u8>],
        gateway_id: &str,
        holdings: Holdings,
        limits: JobLimits,
        now_ms: u64,
    ) -> Result<Self, RunnerError> {
        let mut book = JobBook::new();
        for bytes in records {
            if let Ok(dosegate_core::ledger::record::Record::Entry { payload, .. }) =
                dosegate_core::ledger::record::Record::decode(bytes)
            {
                book.apply(&payload.evt)?;
            }
        }
        let mut runner = Self {
            ledger,
            book,
            gateway_id: gateway_id.to_owned(),
            holdings,
            limits,
            published: Vec::new(),
            closed_at_start: Vec::new(),
            sink: None,
            fleet_policies: std::collections::BTreeMap::new(),
            fleet_models: std::collections::BTreeMap::new(),
        };
        for (job, stage, close) in runner.book.interrupted() {
            warn!(job, ?stage, "job interrupted by a restart: closing it");
            let body = RefusalBody::one(
                "restart",
                "gateway-restarted",
                format!("the gateway restarted while the job was {stage:?}; it is never resumed"),
            );
            let seq = runner.record(&job, close, &body, now_ms)?;
            runner.closed_at_start.push(JobReport {
                key: job,
                stage: close.stage().unwrap_or(JobStage::Aborted),
                codes: vec!["gateway-restarted".into()],
                doses_mg: Vec::new(),
                verify_ms: 0.0,
                seq,
            });
        }
        Ok(runner)
    }

    /// The jobs a restart closed (see [`JobBook::interrupted`]), once.
    pub fn take_closed_at_start(&mut self) -> Vec<JobReport> {
        std::mem::take(&mut self.closed_at_start)
    }

    /// From now on, hands every record to `sink` as soon as it is durable (and, first, every
    /// record written so far), instead of keeping them for [`JobRunner::take_written`].
    pub fn set_sink(&mut self, mut sink: Sink<'k>) {
        for w in self.take_written() {
            sink(w);
        }
        self.sink = Some(sink);
    }

    /// Records made durable since the last call (for the fleet link), when no sink is set.
    pub fn take_written(&mut self) -> Vec<WrittenRecord> {
        let mut out = std::mem::take(&mut self.published);
        out.extend(self.ledger.take_written());
        out
    }

    /// The ledger's head.
    pub fn head(&self) -> dosegate_core::ledger::ChainHead {
        self.ledger.head()
    }

    /// Records a gateway event (no job): a trust update, an insecure-mode notice.
    pub fn record_gateway_event<T: Serialize>(
        &mut self,
        kind: EventKind,
        body: &T,
        now_ms: u64,
    ) -> Result<u64, RunnerError> {
        let event = Event {
            job: None,
            body: encode_body(body)?,
            kind,
        };
        let seq = self.ledger.record(event, now_ms)?;
        if let Some(sink) = &mut self.sink {
            for w in self.ledger.take_written() {
                sink(w);
            }
        }
        Ok(seq)
    }

    /// A policy in force from signed fleet metadata (its TOML), used instead of the file.
    pub fn hold_policy(&mut self, id: &str, toml: &[u8]) {
        self.fleet_policies.insert(id.to_owned(), toml.to_vec());
    }

    /// A model in force from signed fleet metadata, used instead of the file.
    pub fn hold_model(&mut self, id: &str, bytes: &[u8]) {
        self.fleet_models.insert(id.to_owned(), bytes.to_vec());
    }

    fn record<T: Serialize>(
        &mut self,
        job: &str,
        kind: EventKind,
        body: &T,
        now_ms: u64,
    ) -> Result<u64, RunnerError> {
        let event = Event {
            job: Some(job.to_owned()),
            body: encode_body(body)?,
            kind,
        };
        self.book.check(
            job,
            kind.stage().ok_or(LifecycleError::NotAJobEvent { kind })?,
        )?;
        let seq = self.ledger.record(event.clone(), now_ms)?;
        self.book.apply(&event)?;
        if let Some(sink) = &mut self.sink {
            for w in self.ledger.take_written() {
                sink(w);
            }
        }
        Ok(seq)
    }

    /// Refuses an intake (before its envelope authenticated, or because the gateway cannot take
    /// a job now) under a fresh intake key: `received`, then `rejected` with the reason.
    pub fn refuse_intake(
        &mut self,
        bytes: &[u8],
        code: &str,
        message: &str,
        now_ms: u64,
    ) -> Result<JobReport, RunnerError> {
        let started = Instant::now();
        let key = intake_key(self.ledger.head().next_seq);
        let received = ReceivedBody {
            bytes: bytes.len() as u64,
            envelope_sha256: hex::encode(Sha256::digest(bytes)),
            job_id: None,
            seq: None,
        };
        self.record(&key, EventKind::Received, &received, now_ms)?;
        let seq = self.record(
            &key,
            EventKind::Rejected,
            &RefusalBody::one("intake", code, message),
            now_ms,
        )?;
        warn!(job = key, code, message, "job refused at intake");
        Ok(JobReport {
            key,
            stage: JobStage::Rejected,
            codes: vec![code.to_owned()],
            doses_mg: Vec::new(),
            verify_ms: started.elapsed().as_secs_f64() * 1000.0,
            seq,
        })
    }

    /// Runs one job from its signed bytes to its final event. `now_ms` is the wall clock;
    /// `stop` resolves when the job must stop (hub abort or shutdown).
    #[allow(clippy::too_many_lines)]
    pub async fn run_job(
        &mut self,
        bytes: &[u8],
        keys: RoleKeysInForce<'_>,
        printer: &mut dyn PrintStation,
        measure: &mut dyn MeasureStation,
        clock: &dyn Fn() -> u64,
        stop: BoxFuture<'_, ()>,
    ) -> Result<JobReport, RunnerError> {
        let started = Instant::now();
        let ctx = GatewayContext {
            gateway_id: &self.gateway_id,
            now: clock() / 1000,
            limits: self.limits,
        };
        let authentic = match job::authenticate_in_force(bytes, keys, &ctx, &self.book) {
            Ok(a) => a,
            Err(e) => return self.refuse_intake(bytes, e.code(), &e.to_string(), clock()),
        };
        let key = authentic.job().job_id.clone();
        if self.book.stage(&key).is_some() {
            // Authenticated but already in the ledger: the replay check's own answer.
            let e = JobError::Replayed { job_id: key };
            return self.refuse_intake(bytes, e.code(), &e.to_string(), clock());
        }
        let received = ReceivedBody {
            bytes: bytes.len() as u64,
            envelope_sha256: hex::encode(Sha256::digest(bytes)),
            job_id: Some(key.clone()),
            seq: Some(authentic.job().seq),
        };
        self.record(&key, EventKind::Received, &received, clock())?;
        info!(job = key, seq = authentic.job().seq, "job received");

        let policy = authentic.job().policy.clone();
        let held = match self.held_policy(&policy.id) {
            Ok(h) => h,
            Err(message) => {
                return self.finish_refused(
                    &key,
                    "design-space",
                    "policy-not-held",
                    &message,
                    clock(),
                    started,
                );
            }
        };
        let verified = match authentic.check_design_space(&held) {
            Ok(v) => v,
            Err(DesignSpaceError::Binding(e)) => {
                return self.finish_refused(
                    &key,
                    "design-space",
                    e.code(),
                    &e.to_string(),
                    clock(),
                    started,
                );
            }
            Err(DesignSpaceError::Program(rejected)) => {
                let mut reasons: Vec<ReasonBody> =
                    rejected.report.reasons.iter().map(reason_body).collect();
                if rejected.report.reasons_omitted > 0 {
                    reasons.push(ReasonBody {
                        code: "MORE_REASONS_OMITTED".into(),
                        line: None,
                        message: format!(
                            "{} further reason(s) not listed",
                            rejected.report.reasons_omitted
                        ),
                    });
                }
                let codes = reasons.iter().map(|r| r.code.clone()).collect();
                let body = RefusalBody {
                    reasons,
                    stage: "design-space".into(),
                };
                let seq = self.record(&key, EventKind::Rejected, &body, clock())?;
                warn!(job = key, "job refused: outside the design space");
                return Ok(JobReport {
                    key,
                    stage: JobStage::Rejected,
                    codes,
                    doses_mg: Vec::new(),
                    verify_ms: started.elapsed().as_secs_f64() * 1000.0,
                    seq,
                });
            }
        };
        let rx = verified.job().to_prescription();
        let analysis = verified.program().analysis();
        let body = VerifiedBody {
            job_id: &key,
            seq: verified.job().seq,
            gcode_sha256: hex::encode(verified.job().prescription.gcode_sha256),
            policy: format!("{}@{}", policy.id, policy.version),
            units: rx.units,
            dose_mg: rx.dose_mg,
            estimated_dose_mg: analysis.dose_mg,
            commands: verified.program().commands().len(),
        };
        let verified_seq = self.record(&key, EventKind::Verified, &body, clock())?;
        let verify_ms = started.elapsed().as_secs_f64() * 1000.0;
        info!(job = key, verify_ms, seq = verified_seq, "job verified");

        // The model is loaded before printing: a job whose model the gateway does not hold is
        // refused before it consumes ink.
        let model = match verified.job().models.first() {
            None => None,
            Some(id) => match self.load_model(id) {
                Ok(m) => Some(m),
                Err(message) => {
                    return self
                        .finish_refused(
                            &key,
                            "release",
                            "model-not-held",
                            &message,
                            clock(),
                            started,
                        )
                        .map(|r| JobReport { verify_ms, ..r });
                }
            },
        };

        self.record(
            &key,
            EventKind::Printing,
            &PrintingBody {
                commands: verified.program().commands().len(),
            },
            clock(),
        )?;
        info!(job = key, "printing");
        let report = match printer.print(&verified, held.policy(), stop).await {
            Ok(r) => r,
            Err(message) => {
                let body = RefusalBody::one("printing", "printer-unavailable", message.clone());
                let seq = self.record(&key, EventKind::Aborted, &body, clock())?;
                warn!(job = key, error = message, "printer link failed");
                return Ok(JobReport {
                    key,
                    stage: JobStage::Aborted,
                    codes: vec!["printer-unavailable".into()],
                    doses_mg: Vec::new(),
                    verify_ms,
                    seq,
                });
            }
        };
        let summary = match &report.outcome {
            Ok(s) => s.clone(),
            Err(reason) => {
                let body = AbortedBody {
                    code: reason.code(),
                    reason,
                    firmware: report.firmware.as_ref(),
                };
                let seq = self.record(&key, EventKind::Aborted, &body, clock())?;
                warn!(job = key, code = reason.code(), "print aborted");
                return Ok(JobReport {
                    key,
                    stage: JobStage::Aborted,
                    codes: vec![reason.code().to_owned()],
                    doses_mg: Vec::new(),
                    verify_ms,
                    seq,
                });
            }
        };
        let body = PrintedBody {
            summary: &summary,
            firmware: report.firmware.as_ref(),
            seconds: report.seconds,
        };
        self.record(&key, EventKind::Printed, &body, clock())?;
        info!(
            job = key,
            commands = summary.commands,
            seconds = report.seconds,
            "printed"
        );

        let measured = measure.measure(&key, rx.units, model.as_ref()).await;
        let body = MeasuredBody {
            model: measured.model.as_ref(),
            units: measured.units.iter().map(unit_body).collect(),
            incomplete: measured.incomplete.as_deref(),
        };
        self.record(&key, EventKind::Measured, &body, clock())?;
        let account = match release::decide_job(&rx, &measured.units) {
            Ok(a) => a,
            Err(e) => {
                return self
                    .finish_refused(
                        &key,
                        "release",
                        "release-decision",
                        &e.to_string(),
                        clock(),
                        started,
                    )
                    .map(|r| JobReport { verify_ms, ..r });
            }
        };
        let kind = match account.outcome() {
            release::JobOutcome::Released => EventKind::Released,
            release::JobOutcome::Quarantined => EventKind::Quarantined,
            release::JobOutcome::Rejected => EventKind::Rejected,
        };
        let seq = self.record(&key, kind, &account, clock())?;
        let doses_mg = account
            .units()
            .iter()
            .map(|u| u.decision.dose().map(|d| d.dose_mg))
            .collect();
        let codes = account
            .units()
            .iter()
            .filter(|u| !u.decision.is_released())
            .map(|u| u.decision.code().to_owned())
            .collect();
        info!(job = key, outcome = kind.as_str(), "release decided");
        Ok(JobReport {
            key,
            stage: kind.stage().unwrap_or(JobStage::Rejected),
            codes,
            doses_mg,
            verify_ms,
            seq,
        })
    }

    fn finish_refused(
        &mut self,
        key: &str,
        stage: &str,
        code: &str,
        message: &str,
        now_ms: u64,
        started: Instant,
    ) -> Result<JobReport, RunnerError> {
        let seq = self.record(
            key,
            EventKind::Rejected,
            &RefusalBody::one(stage, code, message),
            now_ms,
        )?;
        warn!(job = key, code, message, "job refused");
        Ok(JobReport {
            key: key.to_owned(),
            stage: JobStage::Rejected,
            codes: vec![code.to_owned()],
            doses_mg: Vec::new(),
            verify_ms: started.elapsed().as_secs_f64() * 1000.0,
            seq,
        })
    }

    fn held_policy(&self, id: &str) -> Result<HeldPolicy, String> {
        if let Some(bytes) = self.fleet_policies.get(id) {
            return HeldPolicy::from_bytes(bytes).map_err(|e| format!("policy {id} (fleet): {e}"));
        }
        let path = held_file(&self.holdings.policies_dir, id, "toml")?;
        let bytes = read_capped(&path, MAX_POLICY_BYTES)?;
        HeldPolicy::from_bytes(&bytes).map_err(|e| format!("policy {}: {e}", path.display()))
    }

    fn load_model(&self, id: &str) -> Result<ValidatedModel, String> {
        if let Some(bytes) = self.fleet_models.get(id) {
            return ValidatedModel::from_bytes(bytes)
                .map_err(|e| format!("model {id} (fleet): {e}"));
        }
        let path = held_file(&self.holdings.models_dir, id, "cbor")?;
        let bytes = read_capped(
            &path,
            dosegate_core::inference::model::MAX_MODEL_BYTES as u64,
        )?;
        ValidatedModel::from_bytes(&bytes).map_err(|e| format!("model {}: {e}", path.display()))
    }
}

fn reason_body(r: &Reason) -> ReasonBody {
    ReasonBody {
        code: r.code.as_str().to_owned(),
        line: r.line.map(u64::from),
        message: r.to_string(),
    }
}

fn unit_body(m: &UnitMeasurement) -> UnitBody {
    match &m.spectrum {
        Ok(p) => UnitBody {
            unit: m.unit,
            predicted: Some(p.value()),
            quantity: Some(p.quantity().unit().to_owned()),
            t2: Some(p.t2()),
            q: Some(p.q()),
            domain: Some(format!("{:?}", p.domain()).to_lowercase()),
            mass_mg: m.mass_mg,
            error: None,
        },
        Err(e) => UnitBody {
            unit: m.unit,
            predicted: None,
            quantity: None,
            t2: None,
            q: None,
            domain: None,
            mass_mg: m.mass_mg,
            error: Some(e.to_string()),
        },
    }
}

/// `<dir>/<id>.<ext>`, refusing ids that could leave the directory.
fn held_file(dir: &Path, id: &str, ext: &str) -> Result<PathBuf, String> {
    let ok = !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !id.starts_with('.');
    if ok {
        Ok(dir.join(format!("{id}.{ext}")))
    } else {
        Err(format!("{id:?} is not a valid id"))
    }
}

fn read_capped(path: &Path, cap: u64) -> Result<Vec<u8>, String> {
    use std::io::Read as _;
    let file = std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let mut bytes = Vec::new();
    file.take(cap + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if bytes.len() as u64 > cap {
        return Err(format!("{} is larger than {cap} bytes", path.display()));
    }
    Ok(bytes)
}

/// Waits up to `timeout` for `path` to exist, polling every `every`.
pub async fn wait_for_file(path: &Path, timeout: Duration, every: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if path.is_file() {
            return true;
        }
        if tokio::time::Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(every).await;
    }
}

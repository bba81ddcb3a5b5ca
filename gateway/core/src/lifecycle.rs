//! The job lifecycle as the running gateway drives it, without I/O: which ledger job key a job is
//! recorded under, the bodies of its events, and the [`JobBook`] — every job's stage, rebuilt
//! from the ledger at start — which refuses a transition the ledger's verifier would refuse and
//! answers the replay check of job verification.
//!
//! ```text
//! received → verified → printing → printed → measured → released | rejected | quarantined
//!          ↘ rejected  ↘ rejected | aborted  ↘ aborted  ↘ rejected
//! ```
//!
//! A job whose envelope does not authenticate (forged, for another gateway, expired, replayed…)
//! has no trustworthy id: it is recorded under an intake key (`intake-<seq>`, the ledger seq of
//! its `received` event), so a forgery can never occupy or close a real job's id, and a refused
//! job can be sent again. A job that authenticates is recorded under its own `job_id`.
//!
//! At start, [`JobBook::interrupted`] names the jobs a crash or power cut left open and the event
//! that closes each (a print cut short is `aborted`; printed units never measured are `rejected`;
//! measured units never decided are `quarantined` for the Qualified Person): the gateway never
//! resumes an interrupted print and never releases what it did not see through.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::job::JobHistory;
use crate::ledger::{Event, EventKind, JobStage};

/// Prefix of the ledger job key of an intake that did not authenticate.
pub const INTAKE_PREFIX: &str = "intake-";

/// Authentic job ids remembered for the replay check besides the sequence number (which the hub
/// increases with every job, so older ids are refused by their sequence anyway).
pub const REMEMBERED_JOB_IDS: usize = 4096;

/// Largest event body decoded when the book is rebuilt from the ledger.
pub const MAX_BODY_DECODE: usize = 64 * 1024;

/// The ledger job key of an intake refused before its envelope authenticated: unique, because
/// it names the ledger seq its `received` event takes.
pub fn intake_key(received_seq: u64) -> String {
    format!("{INTAKE_PREFIX}{received_seq}")
}

/// Why the book refused a transition.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LifecycleError {
    /// The job is not at a stage that allows this event.
    #[error("job {job:?} at {from:?} cannot move to {to:?}")]
    Transition {
        /// The job key.
        job: String,
        /// Where it is (`None`: never seen).
        from: Option<JobStage>,
        /// Where it was asked to go.
        to: JobStage,
    },
    /// A gateway event (no stage) was given where a job event was expected.
    #[error("{kind:?} is not a job event")]
    NotAJobEvent {
        /// The kind.
        kind: EventKind,
    },
    /// A job event without a job key.
    #[error("{kind:?} event without a job key")]
    NoJobKey {
        /// The kind.
        kind: EventKind,
    },
    /// An authentic job's `received` body could not be read.
    #[error("received body of job {job:?} unreadable: {source}")]
    Body {
        /// The job key.
        job: String,
        /// Why.
        #[source]
        source: CborError,
    },
}

impl LifecycleError {
    /// Stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Transition { .. } => "lifecycle-transition",
            Self::NotAJobEvent { .. } => "lifecycle-not-a-job-event",
            Self::NoJobKey { .. } => "lifecycle-no-job-key",
            Self::Body { .. } => "lifecycle-body",
        }
    }
}

/// Body of a `received` event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceivedBody {
    /// Size of the signed message, bytes.
    pub bytes: u64,
    /// SHA-256 of the signed message, lowercase hex.
    pub envelope_sha256: String,
    /// The hub's job id, once the envelope authenticated.
    pub job_id: Option<String>,
    /// The hub's job sequence number, once the envelope authenticated.
    pub seq: Option<u64>,
}

/// One reason a job or unit was refused: a stable code, a message, and the G-code line where it
/// applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasonBody {
    /// Stable code.
    pub code: String,
    /// Line in the G-code, when the reason is about one.
    pub line: Option<u64>,
    /// What happened, with the value and the limit.
    pub message: String,
}

/// Body of a `rejected` or `aborted` event: the stage that refused and every reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefusalBody {
    /// Every reason.
    pub reasons: Vec<ReasonBody>,
    /// `intake`, `design-space`, `printing`, `measurement`, `release` or `restart`.
    pub stage: String,
}

impl RefusalBody {
    /// A refusal with one reason.
    pub fn one(stage: &str, code: &str, message: impl Into<String>) -> Self {
        Self {
            reasons: vec![ReasonBody {
                code: code.to_owned(),
                line: None,
                message: message.into(),
            }],
            stage: stage.to_owned(),
        }
    }
}

/// Encodes an event body as CBOR with map keys in the deterministic order of RFC 8949 §4.2.1,
/// whatever the field order of `T`, so a hub re-encoding the body gets the same bytes.
pub fn encode_body<T: Serialize>(value: &T) -> Result<Vec<u8>, CborError> {
    let value = ciborium::Value::serialized(value).map_err(|e| CborError::Encode {
        reason: e.to_string(),
    })?;
    cbor::to_vec(&canonical(value)?)
}

fn canonical(value: ciborium::Value) -> Result<ciborium::Value, CborError> {
    use ciborium::Value;
    Ok(match value {
        Value::Array(items) => {
            Value::Array(items.into_iter().map(canonical).collect::<Result<_, _>>()?)
        }
        Value::Tag(tag, inner) => Value::Tag(tag, Box::new(canonical(*inner)?)),
        Value::Map(entries) => {
            let mut keyed = entries
                .into_iter()
                .map(|(k, v)| {
                    let k = canonical(k)?;
                    Ok((cbor::to_vec(&k)?, k, canonical(v)?))
                })
                .collect::<Result<Vec<_>, CborError>>()?;
            keyed.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Map(keyed.into_iter().map(|(_, k, v)| (k, v)).collect())
        }
        other => other,
    })
}

/// Every job's stage, and what the replay check needs: the highest accepted sequence number and
/// the most recent authentic job ids.
#[derive(Debug, Clone, Default)]
pub struct JobBook {
    /// Jobs not yet at a final stage.
    open: BTreeMap<String, JobStage>,
    /// Jobs at a final stage, by key (bounded: the oldest are forgotten; their keys can never
    /// come back, as intake keys carry a ledger seq and authentic ids are refused by sequence).
    closed: BTreeSet<String>,
    closed_order: VecDeque<String>,
    /// Authentic job ids, most recent last.
    ids: BTreeSet<String>,
    id_order: VecDeque<String>,
    last_seq: Option<u64>,
}

impl JobBook {
    /// An empty book (a new ledger).
    pub fn new() -> Self {
        Self::default()
    }

    /// The stage of `job` (`None`: never seen, or closed long ago).
    pub fn stage(&self, job: &str) -> Option<JobStage> {
        if let Some(s) = self.open.get(job) {
            return Some(*s);
        }
        // A closed job's exact final stage is not kept; any final stage refuses every move.
        self.closed.contains(job).then_some(JobStage::Released)
    }

    /// Whether `job` may move to `to` now.
    pub fn check(&self, job: &str, to: JobStage) -> Result<(), LifecycleError> {
        if self.closed.contains(job) {
            return Err(LifecycleError::Transition {
                job: job.to_owned(),
                from: Some(JobStage::Released),
                to,
            });
        }
        let from = self.open.get(job).copied();
        if JobStage::allows(from, to) {
            Ok(())
        } else {
            Err(LifecycleError::Transition {
                job: job.to_owned(),
                from,
                to,
            })
        }
    }

    /// Applies one job event (checked first), remembering the job's id and sequence from a
    /// `received` body when it authenticated. Gateway events are ignored.
    pub fn apply(&mut self, event: &Event) -> Result<(), LifecycleError> {
        let Some(to) = event.kind.stage() else {
            return Ok(());
        };
        let job = event
            .job
            .as_deref()
            .ok_or(LifecycleError::NoJobKey { kind: event.kind })?;
        self.check(job, to)?;
        if to == JobStage::Received && !job.starts_with(INTAKE_PREFIX) {
            let body: ReceivedBody =
                ciborium::from_reader(event.body.as_slice()).map_err(|e| LifecycleError::Body {
                    job: job.to_owned(),
                    source: CborError::Malformed {
                        reason: e.to_string(),
                    },
                })?;
            if let Some(seq) = body.seq {
                self.remember(job, seq);
            }
        }
        if matches!(
            to,
            JobStage::Released | JobStage::Rejected | JobStage::Quarantined | JobStage::Aborted
        ) {
            self.open.remove(job);
            if self.closed.insert(job.to_owned()) {
                self.closed_order.push_back(job.to_owned());
            }
            while self.closed_order.len() > REMEMBERED_JOB_IDS {
                if let Some(old) = self.closed_order.pop_front() {
                    self.closed.remove(&old);
                }
            }
        } else {
            self.open.insert(job.to_owned(), to);
        }
        Ok(())
    }

    fn remember(&mut self, job_id: &str, seq: u64) {
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
        if self.ids.insert(job_id.to_owned()) {
            self.id_order.push_back(job_id.to_owned());
        }
        while self.id_order.len() > REMEMBERED_JOB_IDS {
            if let Some(old) = self.id_order.pop_front() {
                self.ids.remove(&old);
            }
        }
    }

    /// Jobs left open (by a crash, a power cut, a kill), each with the event that closes it.
    pub fn interrupted(&self) -> Vec<(String, JobStage, EventKind)> {
        self.open
            .iter()
            .map(|(job, stage)| {
                let close = match stage {
                    JobStage::Received | JobStage::Printed => EventKind::Rejected,
                    JobStage::Verified | JobStage::Printing => EventKind::Aborted,
                    _ => EventKind::Quarantined,
                };
                (job.clone(), *stage, close)
            })
            .collect()
    }

    /// Number of open jobs.
    pub fn open_jobs(&self) -> usize {
        self.open.len()
    }
}

impl JobHistory for JobBook {
    fn contains(&self, job_id: &str) -> bool {
        self.ids.contains(job_id)
    }
    fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(job: &str, kind: EventKind, body: Vec<u8>) -> Event {
        Event {
            job: Some(job.to_owned()),
            body,
            kind,
        }
    }

    fn received(job_id: &str, seq: u64) -> Vec<u8> {
        encode_body(&ReceivedBody {
            bytes: 10,
            envelope_sha256: "00".repeat(32),
            job_id: Some(job_id.to_owned()),
            seq: Some(seq),
        })
        .unwrap()
    }

    #[test]
    fn the_happy_path_closes_the_job_and_remembers_it_for_replay() {
        let mut book = JobBook::new();
        book.apply(&event("job-1", EventKind::Received, received("job-1", 7)))
            .unwrap();
        for kind in [
            EventKind::Verified,
            EventKind::Printing,
            EventKind::Printed,
            EventKind::Measured,
            EventKind::Released,
        ] {
            book.apply(&event("job-1", kind, vec![0xa0])).unwrap();
        }
        assert!(book.interrupted().is_empty());
        assert!(book.contains("job-1"));
        assert_eq!(book.last_seq(), Some(7));
        let again = book
            .apply(&event("job-1", EventKind::Received, received("job-1", 7)))
            .unwrap_err();
        assert_eq!(again.code(), "lifecycle-transition");
    }

    #[test]
    fn refuses_skipping_verification_and_printing_after_a_reject() {
        let mut book = JobBook::new();
        book.apply(&event("j", EventKind::Received, received("j", 1)))
            .unwrap();
        assert!(book.check("j", JobStage::Printing).is_err());
        book.apply(&event("j", EventKind::Rejected, vec![0xa0]))
            .unwrap();
        assert!(book.check("j", JobStage::Printing).is_err());
        assert!(book.check("never-seen", JobStage::Released).is_err());
    }

    #[test]
    fn intake_keys_do_not_count_as_accepted_jobs() {
        let mut book = JobBook::new();
        let key = intake_key(12);
        assert_eq!(key, "intake-12");
        book.apply(&event(&key, EventKind::Received, vec![0xff]))
            .unwrap();
        book.apply(&event(&key, EventKind::Rejected, vec![0xa0]))
            .unwrap();
        assert_eq!(book.last_seq(), None);
        assert!(!book.contains("intake-12"));
    }

    #[test]
    fn interrupted_jobs_are_closed_by_the_allowed_event() {
        let mut book = JobBook::new();
        let stages = [
            ("a", &[EventKind::Received][..]),
            ("b", &[EventKind::Received, EventKind::Verified][..]),
            (
                "c",
                &[
                    EventKind::Received,
                    EventKind::Verified,
                    EventKind::Printing,
                ][..],
            ),
            (
                "d",
                &[
                    EventKind::Received,
                    EventKind::Verified,
                    EventKind::Printing,
                    EventKind::Printed,
                ][..],
            ),
            (
                "e",
                &[
                    EventKind::Received,
                    EventKind::Verified,
                    EventKind::Printing,
                    EventKind::Printed,
                    EventKind::Measured,
                ][..],
            ),
        ];
        for (n, (job, kinds)) in (1u64..).zip(stages) {
            for kind in kinds {
                let body = if *kind == EventKind::Received {
                    received(job, n)
                } else {
                    vec![0xa0]
                };
                book.apply(&event(job, *kind, body)).unwrap();
            }
        }
        let interrupted = book.interrupted();
        assert_eq!(interrupted.len(), 5);
        for (job, stage, close) in interrupted {
            let to = close.stage().unwrap();
            assert!(
                JobStage::allows(Some(stage), to),
                "{job}: {stage:?} → {to:?}"
            );
            book.apply(&event(&job, close, vec![0xa0])).unwrap();
        }
        assert_eq!(book.open_jobs(), 0);
        assert_eq!(book.last_seq(), Some(5));
    }

    #[test]
    fn bodies_are_canonical_whatever_the_field_order() {
        #[derive(Serialize)]
        struct Unordered {
            zeta: u8,
            alpha: String,
            mid: Vec<u8>,
        }
        let bytes = encode_body(&Unordered {
            zeta: 1,
            alpha: "a".into(),
            mid: vec![1, 2],
        })
        .unwrap();
        let value: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        assert!(cbor::is_deterministic_value(&value));
    }

    #[test]
    fn remembered_ids_are_bounded() {
        let mut book = JobBook::new();
        for n in 0..(REMEMBERED_JOB_IDS as u64 + 10) {
            book.remember(&format!("j{n}"), n);
        }
        assert_eq!(book.ids.len(), REMEMBERED_JOB_IDS);
        assert!(!book.contains("j0"));
        assert_eq!(book.last_seq(), Some(REMEMBERED_JOB_IDS as u64 + 9));
    }
}

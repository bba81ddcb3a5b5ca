//! Print jobs: the hub-signed order to print one prescription at one gateway, and its verification.
//!
//! A job travels as a `COSE_Sign1` ([`crate::envelope`]) whose payload is the deterministic CBOR of
//! [`Job`]; the schema is documented in `docs/job-format.md`. The G-code travels inline (optionally
//! zstd-compressed) so that what was signed is exactly what will be printed.
//!
//! Verification happens in two stages, each returning a proof type:
//! 1. [`authenticate`] → [`AuthenticJob`]: size caps, a threshold of the trust root's `jobs` keys,
//!    meant for this gateway, inside its validity window (with a configurable clock skew), never
//!    seen before (job id and sequence checked through [`JobHistory`]), every field within its
//!    bounds, and the SHA-256 of the (decompressed) G-code equal to the prescription's
//!    `gcode_sha256`. This stage stops the attacker who can edit bytes but not sign them.
//! 2. [`AuthenticJob::check_design_space`] → [`VerifiedJob`]: the job must name exactly the policy
//!    the gateway holds (id, version, SHA-256), and the G-code's virtual print must stay inside
//!    that design space (see [`crate::policy`]). This stage stops the compromised slicer whose
//!    output the hub signed.
//!
//! Only a [`VerifiedJob`] can be streamed to a printer. Recording that a job was seen is the
//! caller's duty (the ledger's `received` event); this module does no I/O.

use std::io::Read as _;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::cbor::{self, CborError};
use crate::envelope::{self, ContentType, EnvelopeError, KeyId};
use crate::fleet::metadata::RoleKeysInForce;
use crate::policy::{self, HashedProgram, Policy, PolicyError, Rejected, VerifiedProgram};
use crate::prescription::{self, Formulation, PolicyRef, Prescription, PrescriptionError};
use crate::trust::{Role, TrustError, TrustedRoot};

/// Bounds on a job, from the gateway's configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JobLimits {
    /// Largest signed job accepted, bytes.
    pub max_envelope_bytes: usize,
    /// Largest G-code after decompression, bytes.
    pub max_gcode_bytes: usize,
    /// Clock skew tolerated on `issued_at` and `expires_at`, seconds.
    pub max_skew_s: u64,
    /// Longest validity window (`expires_at - issued_at`) accepted, seconds.
    pub max_validity_s: u64,
}

impl Default for JobLimits {
    fn default() -> Self {
        Self {
            max_envelope_bytes: 8 * 1024 * 1024,
            max_gcode_bytes: 6 * 1024 * 1024,
            max_skew_s: 300,
            max_validity_s: 7 * 24 * 3600,
        }
    }
}

/// How the G-code bytes are encoded inside the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GcodeEncoding {
    /// Plain bytes.
    Identity,
    /// One zstd frame (RFC 8878).
    Zstd,
}

/// The G-code as carried in the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GcodePayload {
    /// The (possibly compressed) bytes.
    pub bytes: serde_bytes::ByteBuf,
    /// Their encoding.
    pub encoding: GcodeEncoding,
}

/// The prescription as bound into a job: the pharmacist's order plus the G-code's hash.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPrescription {
    /// Units (printlets) the G-code prints.
    pub units: u32,
    /// Dose per unit, mg.
    pub dose_mg: f64,
    /// Product code.
    pub product: String,
    /// Pseudonymous patient reference.
    pub patient_ref: String,
    /// SHA-256 of the (decompressed) G-code.
    #[serde(with = "serde_bytes")]
    pub gcode_sha256: [u8; 32],
    /// Allowed deviation per unit, percent.
    pub tolerance_pct: f64,
}

/// The policy a job must be checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobPolicy {
    /// Policy id.
    pub id: String,
    /// SHA-256 of the policy file's bytes.
    #[serde(with = "serde_bytes")]
    pub sha256: [u8; 32],
    /// Policy version.
    pub version: u32,
}

/// The signed job payload. Fields are declared in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// Sequence number of this gateway's jobs at the hub; strictly increasing.
    pub seq: u64,
    /// The G-code.
    pub gcode: GcodePayload,
    /// Unique job id.
    pub job_id: String,
    /// PAT model ids used to release the units.
    pub models: Vec<String>,
    /// The design space to check against.
    pub policy: JobPolicy,
    /// Issue time, Unix seconds.
    pub issued_at: u64,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
    /// The gateway this job is for.
    pub gateway_id: String,
    /// The ink.
    pub formulation: Formulation,
    /// The order.
    pub prescription: JobPrescription,
}

impl Job {
    /// Encodes the payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>, CborError> {
        cbor::to_vec(self)
    }

    /// The prescription in the form the design-space check takes.
    pub fn to_prescription(&self) -> Prescription {
        Prescription {
            patient_ref: self.prescription.patient_ref.clone(),
            product: self.prescription.product.clone(),
            dose_mg: self.prescription.dose_mg,
            tolerance_pct: self.prescription.tolerance_pct,
            units: self.prescription.units,
            formulation: self.formulation.clone(),
            policy: PolicyRef {
                id: self.policy.id.clone(),
                version: self.policy.version,
            },
            models: self.models.clone(),
        }
    }
}

/// Whether a job was seen before: the gateway's record of accepted jobs, behind a trait so the
/// core stays free of storage.
pub trait JobHistory {
    /// True when a job with this id was already accepted.
    fn contains(&self, job_id: &str) -> bool;
    /// The highest sequence number accepted so far.
    fn last_seq(&self) -> Option<u64>;
}

/// An in-memory [`JobHistory`] (tests, one-shot commands, and the daemon's cache of its ledger).
#[derive(Debug, Clone, Default)]
pub struct MemoryHistory {
    ids: std::collections::BTreeSet<String>,
    last_seq: Option<u64>,
}

impl MemoryHistory {
    /// Records an accepted job.
    pub fn record(&mut self, job_id: &str, seq: u64) {
        self.ids.insert(job_id.to_owned());
        self.last_seq = Some(self.last_seq.map_or(seq, |s| s.max(seq)));
    }
}

impl JobHistory for MemoryHistory {
    fn contains(&self, job_id: &str) -> bool {
        self.ids.contains(job_id)
    }
    fn last_seq(&self) -> Option<u64> {
        self.last_seq
    }
}

/// Why a job was refused before its G-code was analysed. Each variant has a stable [`code`](JobError::code).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobError {
    /// The envelope failed (malformed, unsigned, bad or unknown signature, below threshold…).
    #[error(transparent)]
    Envelope(#[from] EnvelopeError),
    /// The gateway's trust root has expired.
    #[error(transparent)]
    Trust(#[from] TrustError),
    /// The payload is not a valid job.
    #[error("job payload: {0}")]
    Payload(#[from] CborError),
    /// A field is out of its bounds.
    #[error("job field: {0}")]
    Field(#[from] PrescriptionError),
    /// The job is for another gateway.
    #[error("job is for gateway {job:?}, this is {this:?}")]
    WrongGateway {
        /// The job's gateway id.
        job: String,
        /// This gateway's id.
        this: String,
    },
    /// Expired.
    #[error("job expired at {expires_at} (now {now}, skew {skew_s} s)")]
    Expired {
        /// Expiry.
        expires_at: u64,
        /// Time of the check.
        now: u64,
        /// Skew allowed.
        skew_s: u64,
    },
    /// Issued in the future.
    #[error("job issued at {issued_at}, in the future (now {now}, skew {skew_s} s)")]
    NotYetValid {
        /// Issue time.
        issued_at: u64,
        /// Time of the check.
        now: u64,
        /// Skew allowed.
        skew_s: u64,
    },
    /// The validity window is inverted or longer than allowed.
    #[error("job valid from {issued_at} to {expires_at}: window longer than {max_s} s or inverted")]
    ValidityWindow {
        /// Issue time.
        issued_at: u64,
        /// Expiry.
        expires_at: u64,
        /// Longest window allowed.
        max_s: u64,
    },
    /// The job id was accepted before.
    #[error("job {job_id} was already accepted (replay)")]
    Replayed {
        /// The job id.
        job_id: String,
    },
    /// The sequence number does not exceed the last accepted one.
    #[error("job sequence {seq} is not above the last accepted {last}")]
    StaleSequence {
        /// The job's seq.
        seq: u64,
        /// The last accepted.
        last: u64,
    },
    /// The G-code could not be decompressed.
    #[error("G-code is not a valid zstd frame: {reason}")]
    GcodeEncoding {
        /// What the decoder reported.
        reason: String,
    },
    /// The G-code exceeds the cap.
    #[error("G-code exceeds {max} bytes")]
    GcodeTooLarge {
        /// The cap.
        max: usize,
    },
    /// The G-code's hash is not the prescription's.
    #[error("G-code SHA-256 {actual} differs from the prescription's {expected}")]
    GcodeHashMismatch {
        /// The prescription's hash.
        expected: String,
        /// The hash of the bytes received.
        actual: String,
    },
    /// The job names another policy than the one given.
    #[error(
        "job names policy {job_id} v{job_version} ({job_sha256}); the gateway holds {held_id} v{held_version} ({held_sha256})"
    )]
    PolicyMismatch {
        /// Named by the job.
        job_id: String,
        /// Named by the job.
        job_version: u32,
        /// Named by the job.
        job_sha256: String,
        /// Held by the gateway.
        held_id: String,
        /// Held by the gateway.
        held_version: u32,
        /// Held by the gateway.
        held_sha256: String,
    },
}

impl JobError {
    /// The stable reason code reported to people and machines.
    pub fn code(&self) -> &'static str {
        match self {
            JobError::Envelope(e) => match e {
                EnvelopeError::TooLarge { .. } => "JOB_TOO_LARGE",
                EnvelopeError::Malformed { .. } | EnvelopeError::NoPayload => "JOB_MALFORMED",
                EnvelopeError::WrongAlgorithm => "JOB_WRONG_ALGORITHM",
                EnvelopeError::WrongContentType { .. } => "JOB_WRONG_CONTENT_TYPE",
                EnvelopeError::Unsigned => "JOB_UNSIGNED",
                EnvelopeError::TooManySignatures { .. } => "JOB_TOO_MANY_SIGNATURES",
                EnvelopeError::BadSignature { .. } => "JOB_BAD_SIGNATURE",
                EnvelopeError::UnknownKey { .. } => "JOB_UNKNOWN_KEY",
                EnvelopeError::BelowThreshold { .. } => "JOB_BELOW_THRESHOLD",
                EnvelopeError::BadPublicKey | EnvelopeError::Sign(_) => "JOB_KEY_ERROR",
            },
            JobError::Trust(_) => "TRUST_ROOT_EXPIRED",
            JobError::Payload(_) => "JOB_PAYLOAD_MALFORMED",
            JobError::Field(_) => "JOB_FIELD_INVALID",
            JobError::WrongGateway { .. } => "JOB_WRONG_GATEWAY",
            JobError::Expired { .. } => "JOB_EXPIRED",
            JobError::NotYetValid { .. } => "JOB_NOT_YET_VALID",
            JobError::ValidityWindow { .. } => "JOB_VALIDITY_WINDOW",
            JobError::Replayed { .. } => "JOB_REPLAYED",
            JobError::StaleSequence { .. } => "JOB_STALE_SEQUENCE",
            JobError::GcodeEncoding { .. } => "JOB_GCODE_ENCODING",
            JobError::GcodeTooLarge { .. } => "JOB_GCODE_TOO_LARGE",
            JobError::GcodeHashMismatch { .. } => "JOB_GCODE_HASH_MISMATCH",
            JobError::PolicyMismatch { .. } => "JOB_POLICY_MISMATCH",
        }
    }
}

/// What the verifier needs to know about this gateway and now.
#[derive(Debug, Clone, Copy)]
pub struct GatewayContext<'a> {
    /// This gateway's id.
    pub gateway_id: &'a str,
    /// Current time, Unix seconds.
    pub now: u64,
    /// Bounds.
    pub limits: JobLimits,
}

/// A job that the hub signed for this gateway, fresh, unseen, with the G-code the prescription
/// names. Not yet checked against the design space.
#[derive(Debug, Clone)]
pub struct AuthenticJob {
    /// The signed fields, with `gcode.bytes` moved out into `gcode`.
    job: Job,
    /// The decompressed G-code and its hash, which equals the prescription's `gcode_sha256`.
    gcode: HashedProgram,
    signers: Vec<KeyId>,
}

/// Decompresses the G-code payload within the cap.
pub fn decode_gcode(payload: &GcodePayload, max: usize) -> Result<Vec<u8>, JobError> {
    decode_gcode_bytes(payload.bytes.to_vec(), payload.encoding, max)
}

/// [`decode_gcode`] taking the payload's bytes: plain G-code is moved, not copied.
fn decode_gcode_bytes(
    payload: Vec<u8>,
    encoding: GcodeEncoding,
    max: usize,
) -> Result<Vec<u8>, JobError> {
    let bytes = match encoding {
        GcodeEncoding::Identity => payload,
        GcodeEncoding::Zstd => {
            let mut src: &[u8] = &payload;
            let decoder = ruzstd::decoding::StreamingDecoder::new(&mut src).map_err(|e| {
                JobError::GcodeEncoding {
                    reason: e.to_string(),
                }
            })?;
            let mut out = Vec::new();
            let cap = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
            decoder
                .take(cap)
                .read_to_end(&mut out)
                .map_err(|e| JobError::GcodeEncoding {
                    reason: e.to_string(),
                })?;
            out
        }
    };
    if bytes.len() > max {
        return Err(JobError::GcodeTooLarge { max });
    }
    Ok(bytes)
}

fn check_fields(job: &Job) -> Result<(), JobError> {
    prescription::check_id("job_id", &job.job_id)?;
    prescription::check_id("gateway_id", &job.gateway_id)?;
    job.to_prescription().validate()?;
    Ok(())
}

/// Stage 1: checks the envelope and every claim that does not need the design space.
///
/// The order of checks is fixed so each attack gets its own, most specific reason: envelope and
/// signatures first (nothing unsigned is even parsed further), then the payload, the gateway, the
/// validity window, replay, and finally the G-code hash.
///
/// Only the trust root's keys count; a gateway that holds a revocation list uses
/// [`authenticate_in_force`].
pub fn authenticate(
    bytes: &[u8],
    root: &TrustedRoot,
    ctx: &GatewayContext<'_>,
    history: &dyn JobHistory,
) -> Result<AuthenticJob, JobError> {
    authenticate_in_force(
        bytes,
        RoleKeysInForce::without_revocations(root),
        ctx,
        history,
    )
}

/// [`authenticate`] with the keys in force: a `jobs` key the hub's revocation list revokes no
/// longer counts towards the threshold (a job it alone signed is refused as `JOB_UNKNOWN_KEY`).
pub fn authenticate_in_force(
    bytes: &[u8],
    keys: RoleKeysInForce<'_>,
    ctx: &GatewayContext<'_>,
    history: &dyn JobHistory,
) -> Result<AuthenticJob, JobError> {
    let limits = ctx.limits;
    let root = keys.root;
    root.check_current(ctx.now)?;
    let envelope = envelope::decode(bytes, ContentType::Job, limits.max_envelope_bytes)?;
    let keys = keys.keys(Role::Jobs);
    let verified = envelope.verify(&root.role(&keys, Role::Jobs))?;
    let signers = verified.signers().iter().copied().collect();
    let mut job: Job = cbor::from_slice(verified.payload(), limits.max_envelope_bytes)?;
    check_fields(&job)?;
    if job.gateway_id != ctx.gateway_id {
        return Err(JobError::WrongGateway {
            job: job.gateway_id,
            this: ctx.gateway_id.to_owned(),
        });
    }
    let window = job.expires_at.checked_sub(job.issued_at);
    if window.is_none_or(|w| w > limits.max_validity_s) {
        return Err(JobError::ValidityWindow {
            issued_at: job.issued_at,
            expires_at: job.expires_at,
            max_s: limits.max_validity_s,
        });
    }
    if job.issued_at > ctx.now.saturating_add(limits.max_skew_s) {
        return Err(JobError::NotYetValid {
            issued_at: job.issued_at,
            now: ctx.now,
            skew_s: limits.max_skew_s,
        });
    }
    if job.expires_at.saturating_add(limits.max_skew_s) <= ctx.now {
        return Err(JobError::Expired {
            expires_at: job.expires_at,
            now: ctx.now,
            skew_s: limits.max_skew_s,
        });
    }
    if history.contains(&job.job_id) {
        return Err(JobError::Replayed { job_id: job.job_id });
    }
    if let Some(last) = history.last_seq().filter(|last| job.seq <= *last) {
        return Err(JobError::StaleSequence { seq: job.seq, last });
    }
    // The bytes move out of the decoded job (a job can carry megabytes of G-code): `job()`
    // keeps every other signed field, and `gcode()` is the program.
    let payload = std::mem::take(&mut job.gcode.bytes).into_vec();
    let gcode = HashedProgram::new(decode_gcode_bytes(
        payload,
        job.gcode.encoding,
        limits.max_gcode_bytes,
    )?);
    if *gcode.sha256() != job.prescription.gcode_sha256 {
        return Err(JobError::GcodeHashMismatch {
            expected: hex::encode(job.prescription.gcode_sha256),
            actual: hex::encode(gcode.sha256()),
        });
    }
    Ok(AuthenticJob {
        job,
        gcode,
        signers,
    })
}

impl AuthenticJob {
    /// The job's signed fields, except the G-code's bytes (`gcode.bytes` is empty here; the
    /// program is [`Self::gcode`], decompressed).
    pub fn job(&self) -> &Job {
        &self.job
    }

    /// The decompressed G-code, whose hash matched.
    pub fn gcode(&self) -> &[u8] {
        self.gcode.bytes()
    }

    /// The `jobs` keys whose signatures verified.
    pub fn signers(&self) -> &[KeyId] {
        &self.signers
    }

    /// Checks that the job names exactly the policy the gateway holds.
    pub fn check_policy_binding(
        &self,
        held_id: &str,
        held_version: u32,
        held_sha256: [u8; 32],
    ) -> Result<(), JobError> {
        let p = &self.job.policy;
        if p.id == held_id && p.version == held_version && p.sha256 == held_sha256 {
            return Ok(());
        }
        Err(JobError::PolicyMismatch {
            job_id: p.id.clone(),
            job_version: p.version,
            job_sha256: hex::encode(p.sha256),
            held_id: held_id.to_owned(),
            held_version,
            held_sha256: hex::encode(held_sha256),
        })
    }
}

/// A policy file the gateway holds: the parsed design space and the SHA-256 of its exact bytes,
/// which is what a job binds to.
#[derive(Debug, Clone)]
pub struct HeldPolicy {
    policy: Policy,
    sha256: [u8; 32],
}

impl HeldPolicy {
    /// Parses and validates a policy file, remembering the hash of its bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, PolicyError> {
        let text = std::str::from_utf8(bytes).map_err(|_| PolicyError::Syntax {
            reason: "the file is not UTF-8".into(),
        })?;
        Ok(Self {
            policy: Policy::from_toml(text)?,
            sha256: Sha256::digest(bytes).into(),
        })
    }

    /// The design space.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// SHA-256 of the file.
    pub fn sha256(&self) -> [u8; 32] {
        self.sha256
    }
}

/// Why stage 2 refused an authentic job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DesignSpaceError {
    /// The job names another policy than the one held.
    #[error(transparent)]
    Binding(JobError),
    /// The G-code's virtual print leaves the design space or the dose window.
    #[error(transparent)]
    Program(Rejected),
}

/// A job that passed every check: hub signatures, this gateway, fresh, unseen, G-code hash, the
/// policy binding and the design space. The printer link accepts nothing else.
#[derive(Debug, Clone)]
pub struct VerifiedJob {
    authentic: AuthenticJob,
    program: VerifiedProgram,
}

impl AuthenticJob {
    /// Stage 2: checks the policy binding, then runs the G-code's virtual print against the
    /// design space and the prescription's dose window.
    pub fn check_design_space(self, held: &HeldPolicy) -> Result<VerifiedJob, DesignSpaceError> {
        self.check_policy_binding(held.policy.id(), held.policy.version(), held.sha256)
            .map_err(DesignSpaceError::Binding)?;
        let rx = self.job.to_prescription();
        // The bytes checked are the bytes whose hash stage 1 compared with the prescription
        // (`HashedProgram` holds both); they are not hashed again.
        let program = policy::verify_hashed_program(&held.policy, &rx, &self.gcode)
            .map_err(DesignSpaceError::Program)?;
        Ok(VerifiedJob {
            authentic: self,
            program,
        })
    }
}

impl VerifiedJob {
    /// The job's signed fields (the G-code is in [`Self::program`]).
    pub fn job(&self) -> &Job {
        self.authentic.job()
    }

    /// The stage-1 proof it was built on.
    pub fn authentic(&self) -> &AuthenticJob {
        &self.authentic
    }

    /// The checked program: canonical commands, expected positions, analysis.
    pub fn program(&self) -> &VerifiedProgram {
        &self.program
    }
}

/// Both stages at once: what the running gateway does with a job from the hub.
pub fn verify(
    bytes: &[u8],
    root: &TrustedRoot,
    ctx: &GatewayContext<'_>,
    history: &dyn JobHistory,
    held: &HeldPolicy,
) -> Result<VerifiedJob, JobRefusal> {
    let authentic = authenticate(bytes, root, ctx, history).map_err(JobRefusal::Claims)?;
    authentic
        .check_design_space(held)
        .map_err(JobRefusal::DesignSpace)
}

/// Why [`verify`] refused a job.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobRefusal {
    /// Stage 1.
    #[error(transparent)]
    Claims(JobError),
    /// Stage 2.
    #[error(transparent)]
    DesignSpace(DesignSpaceError),
}

#[cfg(test)]
mod tests;

/// Signs a job with the given `jobs` keys (the first signs, the others countersign).
pub fn sign(job: &Job, signers: &[&dyn envelope::Signer]) -> Result<Vec<u8>, JobSignError> {
    let payload = job.to_cbor()?;
    Ok(envelope::sign(ContentType::Job, &payload, signers)?)
}

/// Why a job could not be signed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum JobSignError {
    /// Encoding failed.
    #[error(transparent)]
    Encode(#[from] CborError),
    /// Signing failed.
    #[error(transparent)]
    Sign(#[from] EnvelopeError),
}

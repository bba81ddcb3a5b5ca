//! `dosegate-hub sign-job`: turns a pharmacist's prescription and the slicer's G-code into a job
//! signed for one gateway.
//!
//! The tool binds the SHA-256 of the G-code into the prescription, names the policy by id,
//! version and the SHA-256 of its file, assigns the gateway's next sequence number, and signs with
//! a threshold of the hub's `jobs` keys. Before signing it runs the same design-space check the
//! gateway will run, so the hub never signs a job its own policy rejects.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use dosegate_core::envelope::Signer;
use dosegate_core::job::{
    self, GcodeEncoding, GcodePayload, HeldPolicy, Job, JobPolicy, JobPrescription,
};
use dosegate_core::prescription::Prescription;
use dosegate_core::trust::Role;
use sha2::{Digest, Sha256};

use crate::hub::{HubHome, write_atomic};

/// Inputs of one signing.
#[derive(Debug, Clone)]
pub struct SignJobRequest {
    /// The G-code file.
    pub gcode: PathBuf,
    /// The prescription TOML.
    pub prescription: PathBuf,
    /// The policy file; when absent, `<policy_dir>/<policy id>.toml`.
    pub policy: Option<PathBuf>,
    /// Where to look for policies by id.
    pub policy_dir: PathBuf,
    /// Target gateway.
    pub gateway_id: String,
    /// Job id; when absent, derived from the gateway, sequence and G-code hash.
    pub job_id: Option<String>,
    /// Validity, seconds.
    pub valid_for_s: u64,
    /// Compress the G-code with zstd.
    pub compress: bool,
    /// Current time, Unix seconds.
    pub now: u64,
}

/// What was signed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SignedJobSummary {
    /// Job id.
    pub job_id: String,
    /// Sequence number.
    pub seq: u64,
    /// Target gateway.
    pub gateway_id: String,
    /// SHA-256 of the G-code, hex.
    pub gcode_sha256: String,
    /// Policy id, version and file SHA-256.
    pub policy: String,
    /// Size of the signed job, bytes.
    pub bytes: usize,
    /// Key ids that signed.
    pub signers: Vec<String>,
    /// Expiry, Unix seconds.
    pub expires_at: u64,
}

/// A policy file as the hub binds it: the validated design space, its id and version, and the
/// SHA-256 of the exact bytes (all from one parse, by the gateway's own [`HeldPolicy`]).
#[derive(Debug, Clone)]
pub struct PolicyFile {
    /// Where it was read from.
    pub path: PathBuf,
    /// The parsed policy and the hash of its bytes.
    pub held: HeldPolicy,
}

impl PolicyFile {
    /// Reads and validates a policy file.
    pub fn read(path: &Path) -> Result<Self> {
        let bytes =
            fs::read(path).with_context(|| format!("cannot read policy {}", path.display()))?;
        let held =
            HeldPolicy::from_bytes(&bytes).with_context(|| format!("policy {}", path.display()))?;
        Ok(Self {
            path: path.to_path_buf(),
            held,
        })
    }

    /// Declared id.
    pub fn id(&self) -> &str {
        self.held.policy().id()
    }

    /// Declared version.
    pub fn version(&self) -> u32 {
        self.held.policy().version()
    }

    /// SHA-256 of the file's bytes.
    pub fn sha256(&self) -> [u8; 32] {
        self.held.sha256()
    }
}

/// Signs a job and writes it to `out`.
pub fn sign_job(home: &HubHome, req: &SignJobRequest, out: &Path) -> Result<SignedJobSummary> {
    let rx_text = fs::read_to_string(&req.prescription)
        .with_context(|| format!("cannot read prescription {}", req.prescription.display()))?;
    let rx = Prescription::from_toml(&rx_text)
        .with_context(|| format!("prescription {}", req.prescription.display()))?;
    let gcode = fs::read(&req.gcode)
        .with_context(|| format!("cannot read G-code {}", req.gcode.display()))?;
    let policy_path = req
        .policy
        .clone()
        .unwrap_or_else(|| req.policy_dir.join(format!("{}.toml", rx.policy.id)));
    let policy = PolicyFile::read(&policy_path)?;
    if policy.id() != rx.policy.id || policy.version() != rx.policy.version {
        bail!(
            "the prescription names policy {} v{}, but {} is {} v{}",
            rx.policy.id,
            rx.policy.version,
            policy.path.display(),
            policy.id(),
            policy.version()
        );
    }

    // The hub never signs what its own design space refuses: run the gateway's check first.
    let report = dosegate_core::policy::check(policy.held.policy(), &rx, &gcode);
    if !report.accepted() {
        let reasons: Vec<String> = report.reasons.iter().map(ToString::to_string).collect();
        bail!(
            "the G-code is outside policy {} v{}; not signed:\n  {}",
            policy.id(),
            policy.version(),
            reasons.join("\n  ")
        );
    }
    let root = home.trusted_root(req.now)?;
    let keys = home.role_keys(Role::Jobs, &root)?;
    let threshold = usize::try_from(root.metadata().roles.jobs.threshold)?;
    if keys.len() < threshold {
        bail!(
            "the jobs role needs {threshold} signatures but this hub home holds {} jobs key(s)",
            keys.len()
        );
    }
    let seq = home.next_seq(&req.gateway_id)?;
    let job = build_job(req, &rx, &policy, gcode, seq);
    let job_id = job.job_id.clone();
    let gcode_sha256 = job.prescription.gcode_sha256;
    let signers: Vec<&dyn Signer> = keys
        .iter()
        .take(threshold)
        .map(|k| k as &dyn Signer)
        .collect();
    let bytes = job::sign(&job, &signers)?;
    write_atomic(out, &bytes, false)?;
    Ok(SignedJobSummary {
        job_id,
        seq,
        gateway_id: req.gateway_id.clone(),
        gcode_sha256: hex::encode(gcode_sha256),
        policy: format!(
            "{} v{} ({})",
            policy.id(),
            policy.version(),
            hex::encode(policy.sha256())
        ),
        bytes: bytes.len(),
        signers: signers
            .iter()
            .map(|s| s.public_key().key_id().to_hex())
            .collect(),
        expires_at: job.expires_at,
    })
}

fn build_job(
    req: &SignJobRequest,
    rx: &Prescription,
    policy: &PolicyFile,
    gcode: Vec<u8>,
    seq: u64,
) -> Job {
    let gcode_sha256: [u8; 32] = Sha256::digest(&gcode).into();
    let job_id = req.job_id.clone().unwrap_or_else(|| {
        format!(
            "{}-{seq:06}-{}",
            req.gateway_id,
            &hex::encode(gcode_sha256)[..8]
        )
    });
    let payload = if req.compress {
        GcodePayload {
            bytes: ruzstd::encoding::compress_to_vec(
                &gcode[..],
                ruzstd::encoding::CompressionLevel::Fastest,
            )
            .into(),
            encoding: GcodeEncoding::Zstd,
        }
    } else {
        GcodePayload {
            bytes: gcode.into(),
            encoding: GcodeEncoding::Identity,
        }
    };
    Job {
        seq,
        gcode: payload,
        job_id: job_id.clone(),
        models: rx.models.clone(),
        policy: JobPolicy {
            id: policy.id().to_owned(),
            sha256: policy.sha256(),
            version: policy.version(),
        },
        issued_at: req.now,
        expires_at: req.now.saturating_add(req.valid_for_s),
        gateway_id: req.gateway_id.clone(),
        formulation: rx.formulation.clone(),
        prescription: JobPrescription {
            units: rx.units,
            dose_mg: rx.dose_mg,
            product: rx.product.clone(),
            patient_ref: rx.patient_ref.clone(),
            gcode_sha256,
            tolerance_pct: rx.tolerance_pct,
        },
    }
}

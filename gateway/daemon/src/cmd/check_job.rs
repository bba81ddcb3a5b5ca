//! `dosegate check-job`: verifies a signed job exactly as the running gateway would, by hand.
//!
//! Exit status: 0 the job is accepted, 1 it is rejected (every reason printed), 2 usage or I/O
//! error (a file missing or unreadable, a trust root that does not verify).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use dosegate_core::job::{GatewayContext, JobLimits, MemoryHistory};
use dosegate_core::trust::TrustedRoot;
use serde_json::json;
use sha2::{Digest, Sha256};

/// Verify a signed job: hub signatures, gateway, freshness, G-code hash, policy and design space.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 accepted, 1 rejected, 2 usage or I/O error.

Example:
  dosegate check-job job.cose --trust hub/trust-root.cbor \\
      --policy policies/fdm-hctz-printlet.toml --gateway-id spoke-01 --json")]
pub struct Args {
    /// The signed job (COSE_Sign1).
    #[arg(value_name = "JOB")]
    job: PathBuf,
    /// The pinned hub trust root (trust-root.cbor).
    #[arg(long, value_name = "ROOT")]
    trust: PathBuf,
    /// The policy (design space) the gateway holds for this product.
    #[arg(long, value_name = "POLICY")]
    policy: PathBuf,
    /// This gateway's id.
    #[arg(long, value_name = "ID")]
    gateway_id: String,
    /// Jobs already accepted: a text file of `SEQ JOB_ID` lines (replay check).
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Check as if at this time (Unix seconds) instead of now.
    #[arg(long, value_name = "UNIX_S")]
    now: Option<u64>,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
}

fn read_history(path: &PathBuf) -> Result<MemoryHistory> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read history {}", path.display()))?;
    let mut history = MemoryHistory::default();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (seq, id) = line
            .split_once(' ')
            .with_context(|| format!("{}:{}: expected `SEQ JOB_ID`", path.display(), n + 1))?;
        let seq = seq
            .parse()
            .with_context(|| format!("{}:{}: bad sequence number", path.display(), n + 1))?;
        history.record(id.trim(), seq);
    }
    Ok(history)
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    let now = match args.now {
        Some(t) => t,
        None => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
    };
    let root_bytes = std::fs::read(&args.trust)
        .with_context(|| format!("cannot read trust root {}", args.trust.display()))?;
    let root = TrustedRoot::pin(&root_bytes, now)
        .with_context(|| format!("trust root {} does not verify", args.trust.display()))?;
    let policy_bytes = std::fs::read(&args.policy)
        .with_context(|| format!("cannot read policy {}", args.policy.display()))?;
    let job_bytes = std::fs::read(&args.job)
        .with_context(|| format!("cannot read job {}", args.job.display()))?;
    let history = match &args.history {
        Some(p) => read_history(p)?,
        None => MemoryHistory::default(),
    };
    let ctx = GatewayContext {
        gateway_id: &args.gateway_id,
        now,
        limits: JobLimits::default(),
    };
    let outcome = crate::verify::verify_job(&job_bytes, &root, &ctx, &history, &policy_bytes)?;
    let accepted = outcome.reasons.is_empty();
    if args.json {
        let value = json!({
            "verdict": if accepted { "accept" } else { "reject" },
            "reasons": outcome.reasons,
            "job": outcome.job,
            "analysis": outcome.analysis,
            "job_sha256": hex::encode(Sha256::digest(&job_bytes)),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
    } else {
        print!("{}", outcome.human_report(&args.job.display().to_string()));
    }
    Ok(if accepted {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

//! The gateway's job intake check, shared by `check-job`, `print` and the running daemon: stage 1
//! (signatures, gateway, freshness, replay, G-code hash), the policy binding, then the design
//! space. Turns the core's typed errors into the report people and machines read.

use std::fmt::Write as _;

use anyhow::{Context as _, Result};
use dosegate_core::job::{
    self, AuthenticJob, DesignSpaceError, GatewayContext, HeldPolicy, JobError, JobHistory,
    VerifiedJob,
};
use dosegate_core::policy::Reason;
use dosegate_core::trust::TrustedRoot;
use serde_json::{Value, json};

/// The result of checking one job: no reasons means accepted.
#[derive(Debug)]
pub struct JobOutcome {
    /// Every reason for rejection, each with a stable `code`.
    pub reasons: Vec<Value>,
    /// A summary of the job's signed fields (absent when the envelope did not verify).
    pub job: Option<Value>,
    /// The G-code's virtual print (absent when the check stopped before it).
    pub analysis: Option<Value>,
    /// The verified job, when every check passed (what the printer link streams).
    pub verified: Option<VerifiedJob>,
}

fn job_reason(e: &JobError) -> Value {
    json!({ "code": e.code(), "message": e.to_string() })
}

fn job_summary(a: &AuthenticJob) -> Value {
    let j = a.job();
    json!({
        "job_id": j.job_id,
        "seq": j.seq,
        "gateway_id": j.gateway_id,
        "issued_at": j.issued_at,
        "expires_at": j.expires_at,
        "product": j.prescription.product,
        "dose_mg": j.prescription.dose_mg,
        "tolerance_pct": j.prescription.tolerance_pct,
        "units": j.prescription.units,
        "gcode_sha256": hex::encode(j.prescription.gcode_sha256),
        "gcode_bytes": a.gcode().len(),
        "policy": { "id": j.policy.id, "version": j.policy.version, "sha256": hex::encode(j.policy.sha256) },
        "models": j.models,
        "signers": a.signers().iter().map(dosegate_core::envelope::KeyId::to_hex).collect::<Vec<_>>(),
    })
}

/// One design-space reason as JSON: its fields plus a human `message`.
fn program_reason(r: &Reason) -> Value {
    let mut v = serde_json::to_value(r).unwrap_or_else(|_| json!({}));
    if let Value::Object(map) = &mut v {
        map.insert("message".into(), Value::String(r.to_string()));
    }
    v
}

/// Checks a job against the pinned root, this gateway, its history and the policy it holds.
/// `Err` only for a policy file the gateway cannot use (an operator error, not a job's fault).
pub fn verify_job(
    bytes: &[u8],
    root: &TrustedRoot,
    ctx: &GatewayContext<'_>,
    history: &dyn JobHistory,
    policy_bytes: &[u8],
) -> Result<JobOutcome> {
    let held = HeldPolicy::from_bytes(policy_bytes).context("the policy file is not usable")?;
    let authentic = match job::authenticate(bytes, root, ctx, history) {
        Ok(a) => a,
        Err(e) => {
            return Ok(JobOutcome {
                reasons: vec![job_reason(&e)],
                job: None,
                analysis: None,
                verified: None,
            });
        }
    };
    let summary = job_summary(&authentic);
    match authentic.check_design_space(&held) {
        Ok(verified) => Ok(JobOutcome {
            reasons: Vec::new(),
            job: Some(summary),
            analysis: serde_json::to_value(verified.program().analysis()).ok(),
            verified: Some(verified),
        }),
        Err(DesignSpaceError::Binding(e)) => Ok(JobOutcome {
            reasons: vec![job_reason(&e)],
            job: Some(summary),
            analysis: None,
            verified: None,
        }),
        Err(DesignSpaceError::Program(rejected)) => {
            let mut reasons: Vec<Value> =
                rejected.report.reasons.iter().map(program_reason).collect();
            if rejected.report.reasons_omitted > 0 {
                reasons.push(json!({
                    "code": "MORE_REASONS_OMITTED",
                    "message": format!("{} further reason(s) not listed", rejected.report.reasons_omitted),
                }));
            }
            Ok(JobOutcome {
                reasons,
                job: Some(summary),
                analysis: serde_json::to_value(&rejected.report.analysis).ok(),
                verified: None,
            })
        }
    }
}

impl JobOutcome {
    /// The report for people: verdict, every reason with its code and evidence, the job.
    pub fn human_report(&self, name: &str) -> String {
        let mut out = String::new();
        let verdict = if self.reasons.is_empty() {
            "ACCEPT"
        } else {
            "REJECT"
        };
        let _ = writeln!(out, "{name}: {verdict}");
        for r in &self.reasons {
            let code = r.get("code").and_then(Value::as_str).unwrap_or("?");
            let message = r.get("message").and_then(Value::as_str).unwrap_or("");
            match r.get("line").and_then(Value::as_u64) {
                Some(line) => {
                    let _ = writeln!(out, "  [{code}] line {line}: {message}");
                }
                None => {
                    let _ = writeln!(out, "  [{code}] {message}");
                }
            }
        }
        if let Some(job) = &self.job {
            let get = |k: &str| match job.get(k) {
                Some(Value::String(s)) => s.clone(),
                Some(v) => v.to_string(),
                None => String::new(),
            };
            let _ = writeln!(
                out,
                "  job {} seq {} for {}: {} × {} mg ±{} % of {}",
                get("job_id"),
                get("seq"),
                get("gateway_id"),
                get("units"),
                get("dose_mg"),
                get("tolerance_pct"),
                get("product")
            );
        }
        if let Some(a) = &self.analysis {
            let num = |k: &str| a.get(k).and_then(Value::as_f64).unwrap_or(f64::NAN);
            let _ = writeln!(
                out,
                "  virtual print: {:.2} mm filament, {:.1} mg ink, {:.3} mg API per unit; \
                 nozzle ≤ {:.0} °C, bed ≤ {:.0} °C, feed ≤ {:.1} mm/s, {} layers, ~{:.0} s",
                num("filament_mm"),
                num("mass_mg"),
                num("dose_mg"),
                num("max_nozzle_c"),
                num("max_bed_c"),
                num("max_feed_mm_s"),
                num("layers"),
                num("est_time_s")
            );
        }
        out
    }
}

//! `dosegate-hub`: the hub operators' tool — keys and trust root, signed jobs.
//!
//! `main` parses arguments and reports errors; the work is in the library's modules.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use dosegate_provisioning::hub::{HubHome, InitOptions, RoleShape, root_view};
use dosegate_provisioning::sign_job::{SignJobRequest, sign_job};

/// DoseGate hub tool: the hub's keys and trust root, and jobs signed for spoke gateways.
#[derive(Debug, Parser)]
#[command(name = "dosegate-hub", version, about, long_about = None, after_help = EXAMPLES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

const EXAMPLES: &str = "\
Examples:
  dosegate-hub init --dir hub
  dosegate-hub sign-job --hub hub --gcode printlet.gcode \\
      --prescription provisioning/examples/prescription-hctz.toml --gateway-id spoke-01 --out job.cose
  dosegate check-job job.cose --trust hub/trust-root.cbor --policy policies/fdm-hctz-printlet.toml \\
      --gateway-id spoke-01";

#[derive(Debug, Subcommand)]
enum Command {
    /// Create a hub home: root, jobs, policies, models and revocation keys and a signed
    /// version-1 trust root (HUB/trust-root.cbor) to pin on gateways.
    Init(InitArgs),
    /// Sign a job for one gateway from a prescription (TOML) and the slicer's G-code.
    SignJob(SignJobArgs),
    /// The fleet link: PKI, broker configuration, serving events and receipts, jobs, commands.
    Fleet(dosegate_provisioning::fleet_cmd::FleetArgs),
    /// PAT models: train a model file and its card from calibration spectra.
    #[command(subcommand)]
    Model(dosegate_provisioning::model::cli::ModelCommand),
    /// Show the hub's trust root (keys, roles, thresholds, expiry).
    ShowRoot {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
    },
}

#[derive(Debug, clap::Args)]
struct InitArgs {
    /// Directory of the new hub home (created; must not already hold a hub).
    #[arg(long, value_name = "HUB")]
    dir: PathBuf,
    /// The hub's identity, written into the trust root.
    #[arg(long, default_value = "hub")]
    hub_id: String,
    /// Number of root keys.
    #[arg(long, default_value_t = 1)]
    root_keys: u32,
    /// Root signatures required to accept a new trust root.
    #[arg(long, default_value_t = 1)]
    root_threshold: u32,
    /// Number of jobs keys.
    #[arg(long, default_value_t = 1)]
    jobs_keys: u32,
    /// Jobs signatures required on every job.
    #[arg(long, default_value_t = 1)]
    jobs_threshold: u32,
    /// Lifetime of the trust root (e.g. 365d, 2y).
    #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
    expires_in: Duration,
}

#[derive(Debug, clap::Args)]
struct SignJobArgs {
    /// The hub home.
    #[arg(long, value_name = "HUB")]
    hub: PathBuf,
    /// The slicer's G-code.
    #[arg(long, value_name = "FILE")]
    gcode: PathBuf,
    /// The prescription (TOML; see provisioning/examples/).
    #[arg(long, value_name = "RX.toml")]
    prescription: PathBuf,
    /// The gateway the job is for.
    #[arg(long, value_name = "ID")]
    gateway_id: String,
    /// Where to write the signed job (COSE_Sign1).
    #[arg(long, value_name = "JOB")]
    out: PathBuf,
    /// The policy file; by default POLICY_DIR/<policy id>.toml.
    #[arg(long, value_name = "POLICY")]
    policy: Option<PathBuf>,
    /// Where policies are looked up by id.
    #[arg(long, default_value = "policies")]
    policy_dir: PathBuf,
    /// Job id (default: <gateway>-<seq>-<first 8 hex of the G-code hash>).
    #[arg(long)]
    job_id: Option<String>,
    /// How long the job stays valid.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    valid_for: Duration,
    /// Compress the G-code inside the job with zstd.
    #[arg(long)]
    compress: bool,
    /// Print a JSON summary.
    #[arg(long)]
    json: bool,
}

fn now() -> Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Init(a) => {
            let home = HubHome::init(
                &a.dir,
                &InitOptions {
                    hub_id: a.hub_id,
                    root: RoleShape {
                        keys: a.root_keys,
                        threshold: a.root_threshold,
                    },
                    jobs: RoleShape {
                        keys: a.jobs_keys,
                        threshold: a.jobs_threshold,
                    },
                    lifetime_s: a.expires_in.as_secs(),
                    now: now()?,
                },
            )?;
            println!(
                "hub home created in {}\n  trust root: {}\n  keys:       {} (keep private; 0600)",
                home.dir().display(),
                home.dir().join("trust-root.cbor").display(),
                home.dir().join("keys").display()
            );
        }
        Command::SignJob(a) => {
            let home = HubHome::open(&a.hub)?;
            let summary = sign_job(
                &home,
                &SignJobRequest {
                    gcode: a.gcode,
                    prescription: a.prescription,
                    policy: a.policy,
                    policy_dir: a.policy_dir,
                    gateway_id: a.gateway_id,
                    job_id: a.job_id,
                    valid_for_s: a.valid_for.as_secs(),
                    compress: a.compress,
                    now: now()?,
                },
                &a.out,
            )?;
            if a.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!(
                    "signed job {} (seq {}) for {} → {} ({} bytes)\n  G-code SHA-256 {}\n  policy {}",
                    summary.job_id,
                    summary.seq,
                    summary.gateway_id,
                    a.out.display(),
                    summary.bytes,
                    summary.gcode_sha256,
                    summary.policy
                );
            }
        }
        Command::Fleet(a) => dosegate_provisioning::fleet_cmd::run(a)?,
        Command::Model(c) => dosegate_provisioning::model::cli::run(c)?,
        Command::ShowRoot { hub } => {
            let home = HubHome::open(&hub)?;
            let root = home.trusted_root(now()?).context("trust root")?;
            println!(
                "{}",
                serde_json::to_string_pretty(&root_view(root.metadata()))?
            );
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dosegate-hub: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

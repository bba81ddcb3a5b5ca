//! `dosegate print`: streams one job to the printer by hand, with a progress bar, and prints the
//! outcome.
//!
//! It owns the command's files and presentation: it verifies the job (signatures, gateway,
//! freshness, policy binding, design space) exactly as `check-job` does, turns the proof into a
//! stream program, opens the port through [`crate::serial`] and reports every stream event. It
//! decides nothing about the protocol (that is `dosegate_core::stream`). Engineering mode
//! (`--gcode` with `--prescription`) streams a local, unsigned file and says so on every output.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use dosegate_core::job::{GatewayContext, JobLimits, MemoryHistory};
use dosegate_core::policy::{Policy, VerifiedProgram, verify_program};
use dosegate_core::prescription::Prescription;
use dosegate_core::stream::{FirmwareCheck, FirmwareIdentity, StreamEvent};
use dosegate_core::trust::TrustedRoot;
use serde::Deserialize;
use serde_json::json;

use crate::printer::{self, PrinterSettings};
use crate::serial::SerialSettings;

/// Stream a verified job to the printer.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Stream a job to the printer over its serial port, by hand.\n\n\
The job is verified first exactly as `check-job` does (hub signatures, this gateway, freshness, \
policy binding) and its G-code is checked against the policy's design space; only then is the \
port opened. The printer's firmware is identified (M115, M503) and compared with the \
commissioning baseline; then every command is sent in canonical form with its own line number \
and checksum, several lines in flight when the firmware reports ADVANCED_OK. Resends never skip \
or repeat a move, M400+M114 checkpoints compare the printer's position and extruder with the \
virtual print, and temperatures are watched against the policy during the print. Ctrl-C stops \
the printer at once (M112 to the emergency parser, or a board reset).\n\n\
Engineering mode (--gcode with --prescription instead of --job/--trust/--gateway-id) streams an \
unsigned local file after the same design-space check. It is labelled ENGINEERING on every \
output and must never be used for a patient.",
    after_help = "Examples:\n  \
dosegate print --port /dev/ttyACM0 --job job.cose --trust trust-root.cbor \\\n      \
--policy policies/fdm-hctz-printlet.toml --gateway-id spoke-01 --firmware-baseline firmware.toml\n  \
dosegate print --port build/ttySIM --gcode printlet.gcode --policy policies/fdm-hctz-printlet.toml \\\n      \
--prescription provisioning/examples/prescription-hctz.toml --record-firmware --json\n\n\
firmware.toml holds the commissioning baseline printed by --record-firmware:\n  \
m115_sha256 = \"…\"\n  m503_sha256 = \"…\"\n\n\
Exit status:\n  0  printed: every command ran exactly once and the final checkpoint matched\n  \
1  refused before printing (job or program rejected; reasons printed)\n  \
2  usage or I/O error (E_USAGE, E_READ, E_PORT)\n  \
3  aborted during the print (reason code printed, e.g. temperature_deviation, firmware_mismatch)"
)]
pub struct Args {
    /// The printer's serial device (or the simulator's pty link).
    #[arg(long, value_name = "DEV")]
    port: PathBuf,
    /// The signed job (COSE_Sign1).
    #[arg(long, value_name = "JOB", requires_all = ["trust", "gateway_id"], conflicts_with_all = ["gcode", "prescription"])]
    job: Option<PathBuf>,
    /// The pinned hub trust root.
    #[arg(long, value_name = "ROOT")]
    trust: Option<PathBuf>,
    /// The policy (design space) for this product.
    #[arg(long, value_name = "POLICY")]
    policy: PathBuf,
    /// This gateway's id.
    #[arg(long, value_name = "ID")]
    gateway_id: Option<String>,
    /// Jobs already accepted: `SEQ JOB_ID` lines (replay check).
    #[arg(long, value_name = "FILE")]
    history: Option<PathBuf>,
    /// Check the job as if at this time (Unix seconds).
    #[arg(long, value_name = "UNIX_S")]
    now: Option<u64>,
    /// ENGINEERING MODE: an unsigned G-code file instead of a job.
    #[arg(long, value_name = "FILE", requires = "prescription")]
    gcode: Option<PathBuf>,
    /// ENGINEERING MODE: the prescription the G-code is checked against.
    #[arg(long, value_name = "RX")]
    prescription: Option<PathBuf>,
    /// The commissioning baseline of the firmware's M115/M503 digests (TOML).
    #[arg(long, value_name = "FILE", conflicts_with = "record_firmware")]
    firmware_baseline: Option<PathBuf>,
    /// Record the firmware digests instead of comparing them (commissioning, engineering mode).
    #[arg(long)]
    record_firmware: bool,
    /// Baud rate.
    #[arg(long, default_value_t = 115_200)]
    baud: u32,
    /// Do not pulse DTR when opening the port.
    #[arg(long)]
    no_reset: bool,
    /// Most lines in flight with ADVANCED_OK.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u16).range(1..=64))]
    max_in_flight: u16,
    /// The firmware's serial receive buffer in bytes (Marlin's RX_BUFFER_SIZE; the gateway's
    /// `[printer] rx_buffer_bytes`): never more unread bytes than this less one are in flight.
    #[arg(long, value_name = "BYTES", default_value_t = 128,
          value_parser = clap::value_parser!(u32).range(i64::from(printer::RX_BUFFER_BYTES_MIN)..=i64::from(printer::RX_BUFFER_BYTES_MAX)))]
    rx_buffer: u32,
    /// Print one JSON object (events and outcome) instead of a progress bar and report.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Baseline {
    m115_sha256: String,
    m503_sha256: String,
}

const MAX_FILE: u64 = 64 * 1024 * 1024;

fn read(path: &Path) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).with_context(|| format!("E_READ: {}", path.display()))?;
    if meta.len() > MAX_FILE {
        bail!("E_READ: {} is larger than {MAX_FILE} bytes", path.display());
    }
    std::fs::read(path).with_context(|| format!("E_READ: {}", path.display()))
}

fn digest(hex_text: &str, what: &str) -> Result<[u8; 32]> {
    let bytes =
        hex::decode(hex_text.trim()).with_context(|| format!("E_READ: {what} is not hex"))?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map_err(|_| anyhow::anyhow!("E_READ: {what} is not 32 bytes"))
}

fn firmware_check(args: &Args) -> Result<FirmwareCheck> {
    match (&args.firmware_baseline, args.record_firmware) {
        (Some(path), _) => {
            let text = String::from_utf8(read(path)?).context("E_READ: baseline is not UTF-8")?;
            let b: Baseline =
                toml::from_str(&text).with_context(|| format!("E_READ: {}", path.display()))?;
            Ok(FirmwareCheck::Baseline(
                FirmwareIdentity {
                    m115_sha256: digest(&b.m115_sha256, "m115_sha256")?,
                    m503_sha256: digest(&b.m503_sha256, "m503_sha256")?,
                }
                .into(),
            ))
        }
        (None, true) if args.job.is_none() => Ok(FirmwareCheck::RecordOnly),
        (None, true) => bail!(
            "E_USAGE: --record-firmware is for commissioning and engineering mode; a job needs --firmware-baseline"
        ),
        (None, false) => bail!(
            "E_USAGE: give --firmware-baseline FILE (or --record-firmware in engineering mode)"
        ),
    }
}

/// What verification produced: the proof, or the reasons to refuse.
enum Verified {
    Program(Box<(VerifiedProgram, Policy)>),
    Refused(serde_json::Value),
}

fn verify(args: &Args) -> Result<Verified> {
    let policy_bytes = read(&args.policy)?;
    let policy_text =
        String::from_utf8(policy_bytes.clone()).context("E_READ: policy is not UTF-8")?;
    let policy = Policy::from_toml(&policy_text)
        .map_err(|e| anyhow::anyhow!("E_READ: policy invalid: {e}"))?;
    if let Some(job_path) = &args.job {
        let (Some(trust), Some(gateway_id)) = (&args.trust, &args.gateway_id) else {
            bail!("E_USAGE: --job needs --trust and --gateway-id");
        };
        let now = match args.now {
            Some(t) => t,
            None => SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs(),
        };
        let root =
            TrustedRoot::pin(&read(trust)?, now).context("E_READ: trust root does not verify")?;
        let history = match &args.history {
            Some(p) => history(p)?,
            None => MemoryHistory::default(),
        };
        let ctx = GatewayContext {
            gateway_id,
            now,
            limits: JobLimits::default(),
        };
        let outcome =
            crate::verify::verify_job(&read(job_path)?, &root, &ctx, &history, &policy_bytes)?;
        let Some(verified) = outcome.verified.filter(|_| outcome.reasons.is_empty()) else {
            return Ok(Verified::Refused(
                json!({ "stage": "job", "reasons": outcome.reasons, "analysis": outcome.analysis }),
            ));
        };
        Ok(Verified::Program(Box::new((
            verified.program().clone(),
            policy,
        ))))
    } else if let (Some(gcode), Some(rx)) = (&args.gcode, &args.prescription) {
        let rx_text = String::from_utf8(read(rx)?).context("E_READ: prescription is not UTF-8")?;
        let rx = Prescription::from_toml(&rx_text)
            .map_err(|e| anyhow::anyhow!("E_READ: prescription invalid: {e}"))?;
        match verify_program(&policy, &rx, &read(gcode)?) {
            Ok(p) => Ok(Verified::Program(Box::new((p, policy)))),
            Err(rejected) => Ok(Verified::Refused(
                json!({ "stage": "design_space", "report": rejected.report }),
            )),
        }
    } else {
        bail!(
            "E_USAGE: give --job (with --trust, --gateway-id) or, in engineering mode, --gcode with --prescription"
        );
    }
}

fn history(path: &Path) -> Result<MemoryHistory> {
    let text = String::from_utf8(read(path)?).context("E_READ: history is not UTF-8")?;
    let mut h = MemoryHistory::default();
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
    {
        let (seq, id) = line
            .split_once(' ')
            .with_context(|| format!("E_READ: history line {line:?}"))?;
        h.record(
            id.trim(),
            seq.parse()
                .with_context(|| format!("E_READ: history line {line:?}"))?,
        );
    }
    Ok(h)
}

fn progress_bar(total: u64) -> indicatif::ProgressBar {
    let b = indicatif::ProgressBar::new(total);
    b.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} commands  {per_sec}  {msg}")
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    b
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    let engineering = args.job.is_none();
    let mode = if engineering {
        "engineering-unsigned"
    } else {
        "job"
    };
    if engineering && !args.json {
        eprintln!(
            "ENGINEERING MODE: unsigned local G-code — not for patients, nothing is released"
        );
    }
    let firmware = firmware_check(args)?;
    let (program, policy) = match verify(args)? {
        Verified::Program(both) => *both,
        Verified::Refused(why) => {
            if args.json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({ "mode": mode, "outcome": "refused", "refused": why })
                    )?
                );
            } else {
                println!(
                    "REFUSED before printing:\n{}",
                    serde_json::to_string_pretty(&why)?
                );
            }
            return Ok(ExitCode::from(1));
        }
    };
    let settings = PrinterSettings {
        serial: SerialSettings {
            baud: args.baud,
            reset_on_connect: !args.no_reset,
            ..SerialSettings::new(&args.port)
        },
        rx_buffer_bytes: args.rx_buffer,
        max_lines_in_flight: usize::from(args.max_in_flight),
        firmware,
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let bar = (!args.json).then(|| progress_bar(program.commands().len() as u64));
    let mut events = Vec::new();
    let outcome = rt.block_on(async {
        let stop = async {
            let _ = tokio::signal::ctrl_c().await;
        };
        printer::print_program(
            &settings,
            &program,
            &policy,
            |e, p| {
                if let Some(b) = &bar {
                    b.set_position(p.commands_acked as u64);
                    if let StreamEvent::ResendRequested { .. } = e {
                        b.set_message(format!("{} resends", p.resends));
                    }
                    if !matches!(
                        e,
                        StreamEvent::ResendRequested { .. } | StreamEvent::CheckpointPassed { .. }
                    ) {
                        b.println(serde_json::to_string(e).unwrap_or_default());
                    }
                }
                events.push(e.clone());
            },
            stop,
        )
        .await
    });
    let outcome = match outcome {
        Ok(o) => o,
        Err(e @ printer::PrintError::Port(_)) => {
            return Err(anyhow::Error::new(e).context("E_PORT"));
        }
        Err(e) => return Err(anyhow::Error::new(e).context("E_READ")),
    };
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    report(
        args,
        engineering,
        &program,
        &outcome.result,
        outcome.elapsed,
        &events,
    )
}

fn report(
    args: &Args,
    engineering: bool,
    program: &VerifiedProgram,
    outcome: &Result<dosegate_core::stream::CompletionSummary, dosegate_core::stream::AbortReason>,
    elapsed: std::time::Duration,
    events: &[StreamEvent],
) -> Result<ExitCode> {
    let mode = if engineering {
        "engineering-unsigned"
    } else {
        "job"
    };
    let secs = elapsed.as_secs_f64();
    let (code, value) = match outcome {
        Ok(summary) => (
            ExitCode::SUCCESS,
            json!({ "mode": mode, "outcome": "completed", "summary": summary, "seconds": secs,
                    "commands_per_s": summary.commands as f64 / secs.max(1e-9),
                    "program_sha256": hex::encode(program.sha256()) }),
        ),
        Err(reason) => (
            ExitCode::from(3),
            json!({ "mode": mode, "outcome": "aborted", "code": reason.code(), "reason": reason, "seconds": secs,
                    "program_sha256": hex::encode(program.sha256()) }),
        ),
    };
    if args.json {
        let mut v = value;
        if let Some(o) = v.as_object_mut() {
            o.insert("events".into(), serde_json::to_value(events)?);
        }
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        if engineering {
            println!("[ENGINEERING MODE — unsigned, not for patients]");
        }
        match outcome {
            Ok(s) => println!(
                "PRINTED  {} commands exactly once in {secs:.1} s ({} lines sent, {} resends, {} checkpoints)",
                s.commands, s.lines_transmitted, s.resends, s.checkpoints
            ),
            Err(r) => println!("ABORTED  [{}] {}", r.code(), serde_json::to_string(r)?),
        }
        for e in events {
            if let StreamEvent::FirmwareIdentified {
                m115_sha256,
                m503_sha256,
                ..
            } = e
            {
                println!(
                    "firmware: m115_sha256 = \"{m115_sha256}\"\n          m503_sha256 = \"{m503_sha256}\""
                );
            }
        }
    }
    Ok(code)
}

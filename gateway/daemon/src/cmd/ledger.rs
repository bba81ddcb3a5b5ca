//! `dosegate ledger`: verify a ledger directory, recover it after a crash, and exercise the writer.
//!
//! `verify` is read-only and exits 0 when every record verifies, 1 when one does not (naming the
//! first bad record's index and a stable code), 2 on usage or I/O errors. `recover` drops a torn
//! tail as the daemon does at start. `exercise` appends synthetic jobs through the real writer
//! (store, chain, signer, counter, quotes) and prints each durable head; the crash tests and the
//! benchmark drive it. The work is in `crate::store`, `crate::ledger` and `dosegate_core::ledger`.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use dosegate_core::attest::{Component, GoldenValues};
use dosegate_core::envelope::{PublicKey, SoftwareKey};
use dosegate_core::ledger::verify::DEFAULT_APP_PCR;
use dosegate_core::ledger::{Event, EventKind, LedgerError, LedgerTrust, Verifier};
use serde::Deserialize;
use serde_json::json;

use crate::ledger::{GatewayKeys, InsecureIdentity, Ledger, LedgerOptions, measure_components};
use crate::store::{self, StoreError, WritePattern};
use crate::tpm::{Handles, Tpm, TpmConfig};

/// Prints a line; a closed stdout (`| head`) is not an error worth a panic.
macro_rules! say {
    ($($arg:tt)*) => {{
        let _ = writeln!(std::io::stdout(), $($arg)*);
    }};
}

/// Ledger commands.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: LedgerCommand,
}

#[derive(Debug, clap::Subcommand)]
enum LedgerCommand {
    Verify(VerifyArgs),
    Recover(RecoverArgs),
    Exercise(ExerciseArgs),
    TrustFile(TrustFileArgs),
}

/// Print the trust file that pins this gateway's keys, for `ledger verify --trust` (enrollment).
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 printed, 2 error (TPM unreachable, unreadable key).

Examples:
  dosegate ledger trust-file --tpm device:/dev/tpmrm0 --gateway-id spoke-01 > spoke-01.ledger-trust.toml
  dosegate ledger trust-file --insecure-dev-key dev.key --gateway-id dev-01")]
pub struct TrustFileArgs {
    /// The gateway id.
    #[arg(long, value_name = "ID")]
    gateway_id: String,
    /// Read the keys from the TPM at this TCTI.
    #[arg(long, value_name = "TCTI", conflicts_with = "insecure_dev_key")]
    tpm: Option<String>,
    /// The application PCR.
    #[arg(long, value_name = "PCR", default_value_t = DEFAULT_APP_PCR)]
    app_pcr: u8,
    /// INSECURE: the development software key file.
    #[arg(long, value_name = "FILE")]
    insecure_dev_key: Option<PathBuf>,
}

/// Verify a ledger directory: signatures, hash chain, TPM counter, job transitions, and each
/// checkpoint's TPM quote against the expected measurements.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Verify a ledger directory: every record's signature by the gateway's event key, the \
hash chain (seq and prev), the TPM counter (bumped at each start and checkpoint, constant between), \
each job's lifecycle (received → verified → printing → printed → measured → released | rejected | \
quarantined, aborted), and each checkpoint's TPM quote (qualifying data = chain head, PCR digest = \
replayed event log, golden measurements). Stops at the first bad record and names its index.\n\n\
Without --trust the keys are taken from the ledger's first gateway-start record: the chain is \
checked but nothing ties it to an enrolled gateway, and the report says so. Records signed in \
insecure development mode are refused unless --allow-insecure is given, and always reported.",
    after_help = "\
Exit status: 0 the ledger verifies, 1 it does not (first bad record named), 2 usage or I/O error.

Trust file (TOML):
  gateway_id = \"spoke-01\"
  event_key = \"04…\"          # SEC1 hex, from enrollment
  attestation_key = \"04…\"    # SEC1 hex, activated at enrollment
  app_pcr = 15
  [golden]                   # optional: allowed SHA-256 per measured component
  binary = [\"ab12…\"]
  model = [\"…\", \"…\"]

Examples:
  dosegate ledger verify /var/lib/dosegate/ledger
  dosegate ledger verify ledger/ --trust spoke-01.ledger-trust.toml --json"
)]
pub struct VerifyArgs {
    /// The ledger directory (segment files ledger-NNNNNNNN.dgl).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The gateway's pinned keys, id and golden measurements (TOML).
    #[arg(long, value_name = "FILE")]
    trust: Option<PathBuf>,
    /// Accept records signed in insecure development mode (still reported).
    #[arg(long)]
    allow_insecure: bool,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
}

/// Drop a torn tail left by an interrupted append, as the daemon does when it starts.
#[derive(Debug, clap::Args)]
#[command(after_help = "\
Exit status: 0 recovered (or nothing to do), 1 the ledger is damaged (not a torn tail), 2 I/O error.

Example:
  dosegate ledger recover /var/lib/dosegate/ledger")]
pub struct RecoverArgs {
    /// The ledger directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// Print one JSON object instead of a report.
    #[arg(long)]
    json: bool,
}

/// Append synthetic jobs through the real writer, printing each durable chain head.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Append synthetic jobs (received → … → released, then a checkpoint) through the \
real ledger writer: store with fsync, chain, event-key signatures, counter and quotes. After each \
append returns it prints `durable SEQ HASH` (the chain head) on stdout. Used by the crash tests \
(which kill it at random points) and by the benchmark. Never point it at a production ledger.",
    after_help = "\
Exit status: 0 done, 2 error.

Example:
  dosegate ledger exercise scratch-ledger --gateway-id dev-01 --insecure-dev-key dev.key --jobs 100"
)]
pub struct ExerciseArgs {
    /// The ledger directory.
    #[arg(value_name = "DIR")]
    dir: PathBuf,
    /// The gateway id.
    #[arg(long, value_name = "ID")]
    gateway_id: String,
    /// Sign, count and quote with the TPM at this TCTI (e.g. `device:/dev/tpmrm0`,
    /// `swtpm:host=127.0.0.1,port=2321`).
    #[arg(long, value_name = "TCTI", conflicts_with = "insecure_dev_key")]
    tpm: Option<String>,
    /// The application PCR (with --tpm).
    #[arg(long, value_name = "PCR", default_value_t = DEFAULT_APP_PCR)]
    app_pcr: u8,
    /// The application PCR's event log, kept across restarts (with --tpm).
    #[arg(long, value_name = "FILE", requires = "tpm")]
    event_log: Option<PathBuf>,
    /// INSECURE: sign with a software key kept in this file (created if missing).
    #[arg(long, value_name = "FILE")]
    insecure_dev_key: Option<PathBuf>,
    /// Number of synthetic jobs.
    #[arg(long, default_value_t = 10)]
    jobs: u64,
    /// Write each frame in chunks of this many bytes (lets crash tests tear a frame).
    #[arg(long, value_name = "BYTES")]
    chunk: Option<usize>,
    /// Print a throughput summary (records/s) on stderr at the end.
    #[arg(long)]
    stats: bool,
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    // Warnings (insecure mode, torn tail dropped) go to stderr; a subscriber installed by `main`
    // first takes precedence.
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .try_init();
    match &args.command {
        LedgerCommand::Verify(a) => verify(a),
        LedgerCommand::Recover(a) => recover(a),
        LedgerCommand::Exercise(a) => exercise(a),
        LedgerCommand::TrustFile(a) => trust_file(a),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TrustFile {
    gateway_id: Option<String>,
    event_key: Option<String>,
    attestation_key: Option<String>,
    app_pcr: Option<u8>,
    #[serde(default)]
    golden: BTreeMap<Component, Vec<String>>,
}

fn parse_key(hex_key: &str, what: &str) -> Result<PublicKey> {
    let bytes = hex::decode(hex_key.trim()).with_context(|| format!("{what} is not hex"))?;
    PublicKey::from_sec1(&bytes).with_context(|| format!("{what} is not a P-256 key"))
}

/// Reads a trust file.
pub fn load_trust(path: &Path, allow_insecure: bool) -> Result<LedgerTrust> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.len() > 1024 * 1024 {
        bail!("trust file {} is larger than 1 MiB", path.display());
    }
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read trust file {}", path.display()))?;
    let file: TrustFile = toml::from_str(&text)
        .with_context(|| format!("trust file {} is invalid", path.display()))?;
    let mut golden = GoldenValues::default();
    for (component, digests) in file.golden {
        let set: Result<BTreeSet<[u8; 32]>> = digests
            .iter()
            .map(|d| {
                let bytes = hex::decode(d).context("golden digest is not hex")?;
                <[u8; 32]>::try_from(bytes.as_slice()).context("golden digest is not 32 bytes")
            })
            .collect();
        golden.0.insert(component, set?);
    }
    Ok(LedgerTrust {
        gateway_id: file.gateway_id,
        event_key: file
            .event_key
            .as_deref()
            .map(|k| parse_key(k, "event_key"))
            .transpose()?,
        attestation_key: file
            .attestation_key
            .as_deref()
            .map(|k| parse_key(k, "attestation_key"))
            .transpose()?,
        golden: (!golden.0.is_empty()).then_some(golden),
        app_pcr: file.app_pcr.unwrap_or(DEFAULT_APP_PCR),
        allow_insecure,
    })
}

fn fail(json: bool, index: u64, code: &str, reason: &str) -> ExitCode {
    if json {
        say!(
            "{}",
            json!({"ok": false, "index": index, "code": code, "reason": reason})
        );
    } else {
        say!("ledger does NOT verify: record {index}: {reason} [{code}]");
    }
    ExitCode::from(1)
}

fn verify(args: &VerifyArgs) -> Result<ExitCode> {
    let trust = match &args.trust {
        Some(path) => load_trust(path, args.allow_insecure)?,
        None => LedgerTrust {
            allow_insecure: args.allow_insecure,
            ..LedgerTrust::default()
        },
    };
    if !args.dir.is_dir() {
        bail!("{} is not a ledger directory", args.dir.display());
    }
    let contents = match store::read_dir(&args.dir) {
        Ok(c) => c,
        Err(StoreError::Damaged {
            index,
            offset,
            path,
        }) => {
            let reason = format!("unreadable frame at byte {offset} of {}", path.display());
            return Ok(fail(args.json, index, "damaged", &reason));
        }
        Err(StoreError::MissingSegment { expected, found }) => {
            let reason = format!("segment {expected} is missing (found {found})");
            return Ok(fail(args.json, 0, "missing-segment", &reason));
        }
        Err(e) => return Err(e).context("cannot read the ledger"),
    };
    let started = Instant::now();
    let mut verifier = Verifier::new(trust);
    for record in &contents.records {
        if let Err(LedgerError { index, fault }) = verifier.push(record) {
            return Ok(fail(args.json, index, fault.code(), &fault.to_string()));
        }
    }
    if contents.torn_tail {
        let e = verifier.truncated();
        let reason =
            "the last record is truncated (torn write; `dosegate ledger recover` drops it)";
        return Ok(fail(args.json, e.index, e.fault.code(), reason));
    }
    let elapsed = started.elapsed();
    let v = verifier.finish();
    let head = v.head();
    let uncovered = v.records().saturating_sub(v.covered_by_checkpoint());
    if args.json {
        say!(
            "{}",
            json!({
                "ok": true,
                "gateway": v.gateway(),
                "event_key": v.event_key().map(|k| k.to_hex()),
                "keys_pinned": v.keys_pinned(),
                "records": v.records(),
                "checkpoints": v.checkpoints(),
                "covered_by_checkpoint": v.covered_by_checkpoint(),
                "insecure_records": v.insecure_records(),
                "jobs": v.jobs().len(),
                "segments": contents.segments,
                "head": {"next_seq": head.next_seq, "hash": hex::encode(head.hash), "counter": head.counter},
                "verify_seconds": elapsed.as_secs_f64(),
            })
        );
    } else {
        say!(
            "ledger verifies: {} records ({} checkpoints, {} jobs) of gateway {}",
            v.records(),
            v.checkpoints(),
            v.jobs().len(),
            v.gateway().unwrap_or("(empty)")
        );
        say!(
            "  head: next seq {}, hash {}, counter {}",
            head.next_seq,
            hex::encode(head.hash),
            head.counter
        );
        if !v.keys_pinned() {
            say!(
                "  WARNING: keys taken from the ledger itself (no --trust): not tied to an enrolled gateway"
            );
        }
        if uncovered > 0 {
            say!(
                "  {uncovered} record(s) after the last checkpoint are not yet covered by a TPM quote"
            );
        }
        if v.insecure_records() > 0 {
            say!(
                "  INSECURE: {} record(s) signed by a software key in development mode",
                v.insecure_records()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn recover(args: &RecoverArgs) -> Result<ExitCode> {
    if !args.dir.is_dir() {
        bail!("{} is not a ledger directory", args.dir.display());
    }
    match store::Store::open(&args.dir, store::DEFAULT_SEGMENT_BYTES, WritePattern::Whole) {
        Ok((_, records, recovery)) => {
            if args.json {
                say!(
                    "{}",
                    json!({"ok": true, "records": records.len(), "truncated_bytes": recovery.truncated_bytes})
                );
            } else {
                say!(
                    "ledger recovered: {} records kept, {} torn bytes dropped",
                    records.len(),
                    recovery.truncated_bytes
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(StoreError::Damaged {
            index,
            offset,
            path,
        }) => {
            let reason = format!("unreadable frame at byte {offset} of {}", path.display());
            Ok(fail(args.json, index, "damaged", &reason))
        }
        Err(e) => Err(e).context("cannot recover the ledger"),
    }
}

/// Loads the insecure development key from `path`, creating it (mode 0600) if missing.
pub fn load_or_create_dev_key(path: &Path) -> Result<SoftwareKey> {
    if path.exists() {
        let secret = read_dev_key(path)?;
        return SoftwareKey::from_bytes(&secret).context("dev key is not a P-256 scalar");
    }
    let key = SoftwareKey::from_signing_key(p256::ecdsa::SigningKey::random(&mut rand_core::OsRng));
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{}", hex::encode(key.to_bytes()))?;
    file.sync_all()?;
    Ok(key)
}

fn trust_file(args: &TrustFileArgs) -> Result<ExitCode> {
    let (event_key, ak) = if let Some(tcti) = &args.tpm {
        let tpm = Tpm::open(&TpmConfig {
            tcti: tcti.clone(),
            app_pcr: args.app_pcr,
            handles: Handles::default(),
        })
        .context("cannot open the TPM")?;
        (tpm.event_public(), Some(tpm.ak_public()))
    } else if let Some(path) = &args.insecure_dev_key {
        let key = SoftwareKey::from_bytes(&read_dev_key(path)?)
            .context("dev key is not a P-256 scalar")?;
        (dosegate_core::envelope::Signer::public_key(&key), None)
    } else {
        bail!("trust-file needs --tpm TCTI or --insecure-dev-key FILE");
    };
    say!(
        "# Ledger trust for gateway {}: `dosegate ledger verify DIR --trust FILE`",
        args.gateway_id
    );
    say!("gateway_id = {:?}", args.gateway_id);
    say!("event_key = \"{}\"", hex::encode(event_key.to_sec1()));
    if let Some(ak) = ak {
        say!("attestation_key = \"{}\"", hex::encode(ak.to_sec1()));
    }
    say!("app_pcr = {}", args.app_pcr);
    say!("# [golden]   allowed SHA-256 per component: binary, config, trust-root, policy, model");
    Ok(ExitCode::SUCCESS)
}

fn read_dev_key(path: &Path) -> Result<[u8; 32]> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let bytes = hex::decode(text.trim()).context("dev key is not hex")?;
    bytes
        .as_slice()
        .try_into()
        .context("dev key is not 32 bytes")
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn exercise(args: &ExerciseArgs) -> Result<ExitCode> {
    if let Some(tcti) = &args.tpm {
        let tpm = Tpm::open(&TpmConfig {
            tcti: tcti.clone(),
            app_pcr: args.app_pcr,
            handles: Handles::default(),
        })
        .context("cannot open the TPM")?;
        let log_path = args
            .event_log
            .clone()
            .unwrap_or_else(|| args.dir.with_extension("app-pcr.log"));
        // Measure this binary into the application PCR (logged durably, then extended).
        let exe = std::env::current_exe().context("cannot find this binary")?;
        let bytes =
            std::fs::read(&exe).with_context(|| format!("cannot read {}", exe.display()))?;
        measure_components(&tpm, &log_path, &[(Component::Binary, &bytes)])
            .context("cannot measure into the application PCR")?;
        return run_exercise(args, &tpm);
    }
    let Some(key_path) = &args.insecure_dev_key else {
        bail!("exercise needs a signing identity: --tpm TCTI or --insecure-dev-key FILE");
    };
    let identity = InsecureIdentity::new(load_or_create_dev_key(key_path)?);
    run_exercise(args, &identity)
}

/// Drives the writer with synthetic jobs under any identity.
pub fn run_exercise(args: &ExerciseArgs, keys: &dyn GatewayKeys) -> Result<ExitCode> {
    let options = LedgerOptions {
        pattern: args
            .chunk
            .map_or(WritePattern::Whole, WritePattern::Chunked),
        ..LedgerOptions::default()
    };
    let started = Instant::now();
    let mut ledger = Ledger::open(&args.dir, &args.gateway_id, keys, options, now_ms())
        .context("cannot open the ledger")?;
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let report = |out: &mut std::io::StdoutLock<'_>, ledger: &Ledger<'_>| -> Result<()> {
        let head = ledger.head();
        writeln!(
            out,
            "durable {} {}",
            head.next_seq - 1,
            hex::encode(head.hash)
        )?;
        out.flush()?;
        Ok(())
    };
    report(&mut out, &ledger)?;
    let run_id = format!("{:x}-{}", now_ms(), std::process::id());
    let kinds = [
        EventKind::Received,
        EventKind::Verified,
        EventKind::Printing,
        EventKind::Printed,
        EventKind::Measured,
        EventKind::Released,
    ];
    let body = dosegate_core::cbor::to_vec(&"synthetic event from `dosegate ledger exercise`")?;
    let first = ledger.head().next_seq;
    for n in 0..args.jobs {
        let job = format!("ex-{run_id}-{n}");
        for kind in kinds {
            let event = Event {
                job: Some(job.clone()),
                body: body.clone(),
                kind,
            };
            ledger.record(event, now_ms())?;
            report(&mut out, &ledger)?;
        }
    }
    if args.stats {
        let records = ledger.head().next_seq - first;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "exercise: {records} records in {secs:.3} s = {:.1} records/s ({} jobs, signer {})",
            records as f64 / secs,
            args.jobs,
            keys.public_key().key_id()
        );
    }
    Ok(ExitCode::SUCCESS)
}

//! `dosegate fleet …`: the gateway's fleet link commands. `exercise` drives the real ledger
//! writer and the real fleet link (MQTT v5, TLS 1.3, client certificate) with synthetic jobs and
//! waits for the hub's receipts: a link check for field engineers, the driver of the crash test
//! that kills the gateway mid-stream, and the benchmark. Never point it at a production ledger.
//!
//! What happens at start is what the daemon does: the last verified hub receipt
//! (`<ledger>.receipt.cose`) says which records are delivered; every later record in the ledger
//! goes into the outbox and is published (again) until a receipt covers it.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use clap::{Args as ClapArgs, Subcommand};
use dosegate_core::fleet::{GatewayId, OutboxConfig, SoftwareVersion};
use dosegate_core::ledger::{Event, EventKind};
use dosegate_core::trust::TrustedRoot;
use serde::Serialize;
use tokio::sync::{mpsc, oneshot, watch};

use crate::cmd::ledger::load_or_create_dev_key;
use crate::fleet_state::TrustInForce;
use crate::ledger::{InsecureIdentity, Ledger, LedgerOptions};
use crate::mqtt::{self, Inbound, LedgerEntry, LinkConfig, LinkStatus};
use crate::outbox::{self, receipt_path, write_receipt};
use crate::store;

/// Arguments of `dosegate fleet`.
#[derive(Debug, ClapArgs)]
pub struct Args {
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Record synthetic jobs in a ledger and deliver them to the hub until receipted.
    Exercise(ExerciseArgs),
}

/// Arguments of `dosegate fleet exercise`.
#[derive(Debug, ClapArgs)]
#[command(
    long_about = "Record synthetic jobs (six events each, plus checkpoints) through the real \
ledger writer and deliver every record not yet receipted over the real fleet link: MQTT v5 over \
TLS 1.3 with a client certificate. Receipts are verified against the pinned trust root; the last \
one is kept beside the ledger so a restart re-sends only what the hub has not confirmed. Exits \
once every record is receipted (or --wait expires). Uses file keys: insecure development mode.",
    after_help = "\
Exit status: 0 every record receipted; 1 not receipted within --wait; 2 error.

Example:
  dosegate fleet exercise --ledger gw/ledger --gateway-id spoke-01 --insecure-dev-key gw/dev.key \\
      --trust-root hub/trust-root.cbor --broker localhost:8883 --ca hub/pki/ca.pem \\
      --cert hub/pki/gateways/spoke-01.pem --key hub/pki/gateways/spoke-01.key --jobs 10 --json"
)]
pub struct ExerciseArgs {
    /// The ledger directory.
    #[arg(long, value_name = "DIR")]
    ledger: PathBuf,
    /// The gateway id (= client certificate CN).
    #[arg(long, value_name = "ID")]
    gateway_id: String,
    /// INSECURE: the ledger's software event key (created if missing).
    #[arg(long, value_name = "FILE")]
    insecure_dev_key: PathBuf,
    /// The pinned hub trust root (receipts are verified against its `jobs` role).
    #[arg(long, value_name = "FILE")]
    trust_root: PathBuf,
    /// The broker, HOST:PORT (HOST must match its certificate).
    #[arg(long, default_value = "localhost:8883")]
    broker: String,
    /// The fleet CA certificate (PEM).
    #[arg(long, value_name = "PEM")]
    ca: PathBuf,
    /// This gateway's client certificate (PEM).
    #[arg(long, value_name = "PEM")]
    cert: PathBuf,
    /// INSECURE: this gateway's client key as a PKCS#8 PEM file (in production: the TPM).
    #[arg(long, value_name = "PEM")]
    key: PathBuf,
    /// Synthetic jobs to record (six events each).
    #[arg(long, default_value_t = 10)]
    jobs: u64,
    /// Pause between events, milliseconds.
    #[arg(long, default_value_t = 0)]
    interval_ms: u64,
    /// Re-send unreceipted records after this long, milliseconds.
    #[arg(long, default_value_t = 5000)]
    resend_after_ms: u64,
    /// How long to wait for the last receipt after the last event.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    wait: Duration,
    /// Print a JSON summary on stdout.
    #[arg(long)]
    json: bool,
}

/// Runs `dosegate fleet`.
pub fn run(args: &Args) -> Result<ExitCode> {
    match &args.command {
        FleetCommand::Exercise(a) => exercise(a),
    }
}

#[derive(Debug, Serialize)]
struct Summary {
    gateway: String,
    records: u64,
    recorded_now: u64,
    receipted_seq: Option<u64>,
    backlog: usize,
    published: u64,
    connections: u64,
    refused: u64,
    record_seconds: f64,
    delivered_seconds: f64,
    records_per_second: f64,
    /// From the last record made durable to the receipt covering it, ms.
    last_receipt_ms: f64,
    /// Peak resident memory of this process (Linux `VmHWM`), KiB.
    peak_rss_kib: Option<u64>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[allow(clippy::too_many_lines)]
fn exercise(args: &ExerciseArgs) -> Result<ExitCode> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let gw = GatewayId::new(&args.gateway_id)?;
    let root_bytes = std::fs::read(&args.trust_root)
        .with_context(|| format!("cannot read {}", args.trust_root.display()))?;
    let root = TrustedRoot::pin(&root_bytes, now_ms() / 1000).context("trust root")?;
    let (host, port) = args
        .broker
        .rsplit_once(':')
        .with_context(|| format!("--broker {:?} is not HOST:PORT", args.broker))?;
    let port: u16 = port.parse().context("--broker port")?;
    tracing::warn!("INSECURE development mode: the TLS client key is a file, not the TPM");
    let signer = mqtt::file_signer(&std::fs::read(&args.key).context("--key")?)?;
    let tls = Arc::new(mqtt::tls_config(
        &std::fs::read(&args.ca).context("--ca")?,
        &std::fs::read(&args.cert).context("--cert")?,
        signer,
    )?);

    // What the ledger already holds, and which of it the hub has receipted.
    let existing = if args.ledger.is_dir() {
        store::read_dir(&args.ledger)?.records
    } else {
        Vec::new()
    };
    let rpath = receipt_path(&args.ledger);
    let outbox = outbox::resume(
        &args.ledger,
        dosegate_core::fleet::metadata::RoleKeysInForce::without_revocations(&root),
        &gw,
        &existing,
        OutboxConfig {
            resend_after_ms: args.resend_after_ms,
            ..OutboxConfig::default()
        },
        now_ms(),
    )?;

    let identity = InsecureIdentity::new(load_or_create_dev_key(&args.insecure_dev_key)?);
    let mut ledger = Ledger::open(
        &args.ledger,
        gw.as_str(),
        &identity,
        LedgerOptions::default(),
        now_ms(),
    )
    .context("cannot open the ledger")?;
    let start_seq = ledger.head().next_seq;

    let config = LinkConfig {
        gateway: gw.clone(),
        host: host.to_owned(),
        port,
        keep_alive: Duration::from_secs(10),
        session_expiry_s: 3600,
        versions: vec![SoftwareVersion {
            name: "dosegate".into(),
            version: env!("CARGO_PKG_VERSION").into(),
        }],
        measurements: vec![],
        insecure: true,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let json = args.json;
    runtime.block_on(async {
        let (ledger_tx, ledger_rx) = mpsc::channel::<LedgerEntry>(8192);
        let (inbound_tx, mut inbound_rx) = mpsc::channel::<Inbound>(16);
        // The exercise answers nothing (no TPM to quote with): its outbound side stays closed.
        let (_, outbound_rx) = mpsc::channel::<mqtt::Outbound>(1);
        let (status_tx, mut status) = watch::channel(LinkStatus::default());
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let link = tokio::spawn(mqtt::run(
            config,
            tls,
            watch::channel(TrustInForce::pinned(root.clone())).1,
            outbox,
            ledger_rx,
            inbound_tx,
            outbound_rx,
            status_tx,
            async {
                let _ = stop_rx.await;
            },
        ));
        tokio::spawn(async move {
            while let Some(msg) = inbound_rx.recv().await {
                tracing::info!(?msg, "inbound message ignored by the exercise");
            }
        });
        let started = Instant::now();
        let feed = |ledger: &mut Ledger<'_>| {
            let recorded_ms = now_ms();
            ledger
                .take_written()
                .into_iter()
                .map(move |w| LedgerEntry {
                    seq: w.seq,
                    hash: w.hash,
                    bytes: w.bytes,
                    recorded_ms,
                })
                .collect::<Vec<_>>()
        };
        for e in feed(&mut ledger) {
            ledger_tx.send(e).await?;
        }
        let run_id = format!("{:x}-{}", now_ms(), std::process::id());
        let body = dosegate_core::cbor::to_vec(&"synthetic event from `dosegate fleet exercise`")?;
        for n in 0..args.jobs {
            for kind in [
                EventKind::Received,
                EventKind::Verified,
                EventKind::Printing,
                EventKind::Printed,
                EventKind::Measured,
                EventKind::Released,
            ] {
                let event = Event {
                    job: Some(format!("fx-{run_id}-{n}")),
                    body: body.clone(),
                    kind,
                };
                ledger.record(event, now_ms())?;
                for e in feed(&mut ledger) {
                    ledger_tx.send(e).await?;
                }
                if args.interval_ms > 0 {
                    tokio::time::sleep(Duration::from_millis(args.interval_ms)).await;
                } else {
                    tokio::task::yield_now().await;
                }
            }
        }
        let record_seconds = started.elapsed().as_secs_f64();
        let head = ledger.head();
        let last = head.next_seq.checked_sub(1);
        let deadline = tokio::time::Instant::now() + args.wait;
        let mut kept = None;
        let done = loop {
            let s = status.borrow().clone();
            if let Some(bytes) = &s.receipt
                && kept.as_ref() != Some(bytes)
            {
                write_receipt(&rpath, bytes)?;
                kept = Some(bytes.clone());
            }
            if s.backlog == 0 && s.receipted.map(|(seq, _)| seq) == last {
                break true;
            }
            if tokio::time::timeout_at(deadline, status.changed()).await.is_err() {
                break false;
            }
        };
        let delivered_seconds = started.elapsed().as_secs_f64();
        let _ = stop_tx.send(());
        link.await??;
        let s = status.borrow().clone();
        let recorded_now = head.next_seq - start_seq;
        let summary = Summary {
            gateway: gw.to_string(),
            records: head.next_seq,
            recorded_now,
            receipted_seq: s.receipted.map(|(seq, _)| seq),
            backlog: s.backlog,
            published: s.published,
            connections: s.connections,
            refused: s.refused,
            record_seconds,
            delivered_seconds,
            records_per_second: recorded_now as f64 / delivered_seconds,
            last_receipt_ms: (delivered_seconds - record_seconds) * 1000.0,
            peak_rss_kib: crate::peak_rss_kib(),
        };
        if json {
            println!("{}", serde_json::to_string(&summary)?);
        } else {
            println!(
                "{}: {} record(s) in the ledger ({} now), receipted up to {}, {} published over {} connection(s); {:.1} records/s end to end",
                summary.gateway,
                summary.records,
                summary.recorded_now,
                summary
                    .receipted_seq
                    .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                summary.published,
                summary.connections,
                summary.records_per_second
            );
        }
        if done {
            Ok(ExitCode::SUCCESS)
        } else {
            eprintln!("dosegate: not every record was receipted within {:?}", args.wait);
            Ok(ExitCode::from(1))
        }
    })
}

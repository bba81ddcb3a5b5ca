//! `dosegate run`: the gateway's long-running mode, started by `dosegate.service`.
//!
//! It reads and validates the configuration once, opens the TPM (keys, counter, application PCR)
//! and measures the gateway's software state into it, opens the ledger (recovering a torn tail
//! and closing any job a crash left open), and resumes delivery: every ledger record the hub has
//! not receipted goes back into the outbox. Then it connects to the hub's broker (MQTT v5,
//! TLS 1.3, client certificate) and runs jobs one at a time through the lifecycle of
//! [`crate::lifecycle`]: verify, print, measure, decide, each transition one sealed ledger event
//! published until receipted. It tells systemd it is ready, keeps `<state>/status.json` current
//! for the health check, and on SIGTERM stops the printer (if printing), records the abort and
//! exits cleanly.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context as _;
use dosegate_core::attest::Component;
use dosegate_core::config::{Config, ConfigError, MAX_CONFIG_BYTES};
use dosegate_core::envelope::Signer;
use dosegate_core::fleet::metadata::{VerifiedModelBundle, VerifiedPolicyBundle};
use dosegate_core::fleet::{GatewayId, Measurement, OutboxConfig, SoftwareVersion};
use dosegate_core::job::JobLimits;
use dosegate_core::trust::TrustedRoot;
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot, watch};
use tracing::{info, warn};

use crate::fleet_state::{Applied as FleetApplied, FleetState, Revocable};
use crate::ledger::{Ledger, LedgerOptions, measure_digests, measure_more};
use crate::lifecycle::{self, JobRunner};
use crate::mqtt::{self, Inbound, LedgerEntry, LinkConfig, LinkStatus, Outbound};
use crate::notify::{self, NotifyError, State};
use crate::outbox;
use crate::printer::PrinterSettings;
use crate::stations::{DropFolderStation, SerialPrintStation};
use crate::store;
use crate::tpm::{Handles, Tpm, TpmConfig};

const AFTER_HELP: &str = "\
Examples:
  dosegate run --config /etc/dosegate/gateway.toml
  dosegate run --config gateway/examples/gateway.toml --json
  dosegate run --config gateway.toml --check      # validate and exit

Under systemd (Type=notify) it reports READY=1 once the configuration is valid, and STOPPING=1
on SIGTERM. Logs go to stderr (the journal): text, or JSON lines with --json.

Exit codes (error codes in brackets, stable):
  0  stopped cleanly by SIGTERM/SIGINT, or --check passed
  2  bad command line
  3  configuration unreadable [config-unreadable] or invalid [config-invalid]
  4  state directory missing or not a directory [state-dir]
  5  systemd notification failed [notify]
  6  signal handling or runtime could not start [runtime]
  7  TPM unreachable or refused [tpm]
  8  ledger cannot be opened, verified or written [ledger]
  9  hub trust root, certificates or keys unusable [fleet-setup]";

/// Run the gateway until stopped (the mode `dosegate.service` starts).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Run the gateway until SIGTERM. Loads and validates the configuration once \
                  (TOML, unknown keys refused), logs the start, warns on every start while an \
                  [insecure] table is present, notifies systemd readiness, and exits 0 when \
                  stopped.",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The configuration file (TOML; see gateway/examples/gateway.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Log JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Validate the configuration and the state directory, then exit.
    #[arg(long)]
    check: bool,
}

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("cannot read configuration {path:?}")]
    ConfigUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration {path:?} refused")]
    ConfigInvalid {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("state directory {path:?} is missing or not a directory")]
    StateDir { path: PathBuf },
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("cannot start the runtime or install signal handlers")]
    Runtime(#[source] std::io::Error),
    #[error("TPM")]
    Tpm(#[source] anyhow::Error),
    #[error("ledger")]
    Ledger(#[source] anyhow::Error),
    #[error("fleet setup")]
    FleetSetup(#[source] anyhow::Error),
}

impl RunError {
    fn code(&self) -> &'static str {
        match self {
            Self::ConfigUnreadable { .. } => "config-unreadable",
            Self::ConfigInvalid { .. } => "config-invalid",
            Self::StateDir { .. } => "state-dir",
            Self::Notify(_) => "notify",
            Self::Runtime(_) => "runtime",
            Self::Tpm(_) => "tpm",
            Self::Ledger(_) => "ledger",
            Self::FleetSetup(_) => "fleet-setup",
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            Self::ConfigUnreadable { .. } | Self::ConfigInvalid { .. } => 3,
            Self::StateDir { .. } => 4,
            Self::Notify(_) => 5,
            Self::Runtime(_) => 6,
            Self::Tpm(_) => 7,
            Self::Ledger(_) => 8,
            Self::FleetSetup(_) => 9,
        }
    }
}

/// Entry point from `main`. Errors are logged here with their stable code and mapped to the exit
/// codes in `--help`, so this never returns `Err`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    install_logging(args.json);
    Ok(match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let chain = error_chain(&err);
            tracing::error!(code = err.code(), error = %chain, "dosegate run failed");
            ExitCode::from(err.exit_code())
        }
    })
}

fn install_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        // The journal stamps each line itself.
        builder.without_time().init();
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn start(args: &Args) -> Result<(), RunError> {
    let (config, digest, config_bytes) = load(&args.config)?;
    info!(
        gateway_id = config.gateway_id.as_str(),
        version = env!("CARGO_PKG_VERSION"),
        config = %args.config.display(),
        config_sha256 = %digest,
        "dosegate starting"
    );
    if config.insecure.is_some() {
        warn!(
            "INSECURE: the configuration has an [insecure] table; this gateway must not release doses"
        );
    }
    if !config.paths.state_dir.is_dir() {
        return Err(RunError::StateDir {
            path: config.paths.state_dir.clone(),
        });
    }
    note_device("printer serial", &config.printer.serial);
    note_device("tpm", &config.tpm.device);
    if args.check {
        info!("configuration valid");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(serve(&config, &config_bytes))
}

/// What the gateway holds, read once at start and measured into the application PCR.
struct Held {
    root: TrustedRoot,
    measured: Vec<(Component, [u8; 32])>,
}

/// SHA-256 of a file, streamed.
fn file_digest(path: &Path) -> anyhow::Result<[u8; 32]> {
    let mut file = File::open(path)
        .with_context(|| format!("cannot read {} to measure it", path.display()))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .with_context(|| format!("cannot read {} to measure it", path.display()))?;
    Ok(hasher.finalize().into())
}

fn read_holdings(config: &Config, config_bytes: &[u8]) -> Result<Held, RunError> {
    let setup = |e: anyhow::Error| RunError::FleetSetup(e);
    let root_path = &config.holdings.trust_root;
    let root_bytes = std::fs::read(root_path)
        .with_context(|| format!("cannot read the trust root {}", root_path.display()))
        .map_err(setup)?;
    let root = TrustedRoot::pin(&root_bytes, now_ms() / 1000)
        .with_context(|| format!("trust root {} refused", root_path.display()))
        .map_err(setup)?;
    let binary = std::env::current_exe()
        .context("cannot find the gateway binary to measure it")
        .and_then(|p| file_digest(&p))
        .map_err(setup)?;
    let mut measured = vec![
        (Component::Binary, binary),
        (Component::Config, Sha256::digest(config_bytes).into()),
        (Component::TrustRoot, Sha256::digest(&root_bytes).into()),
    ];
    for (dir, ext, what) in [
        (&config.holdings.policies_dir, "toml", Component::Policy),
        (&config.holdings.models_dir, "cbor", Component::Model),
    ] {
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok().map(|e| e.path()))
                    .filter(|p| p.extension().is_some_and(|x| x == ext))
                    .collect()
            })
            .unwrap_or_default();
        files.sort();
        for f in files {
            measured.push((what, file_digest(&f).map_err(setup)?));
        }
    }
    Ok(Held { root, measured })
}

fn tpm_config(config: &Config) -> TpmConfig {
    let tcti = match config.insecure.as_ref().and_then(|i| i.tpm_tcti.clone()) {
        Some(t) => {
            warn!(tcti = t, "INSECURE: a software TPM is in use");
            t
        }
        None => format!("device:{}", config.tpm.device.display()),
    };
    TpmConfig {
        tcti,
        app_pcr: dosegate_core::ledger::verify::DEFAULT_APP_PCR,
        handles: Handles::default(),
    }
}

fn tls_signer(config: &Config, tpm: &Arc<Tpm>) -> Result<Arc<dyn Signer + Send + Sync>, RunError> {
    if let Some(path) = config.insecure.as_ref().and_then(|i| i.tls_key.as_ref()) {
        warn!(key = %path.display(), "INSECURE: the mTLS client key is a file, not the TPM");
        let pem = std::fs::read(path)
            .with_context(|| format!("cannot read {}", path.display()))
            .map_err(RunError::FleetSetup)?;
        return mqtt::file_signer(&pem).map_err(|e| RunError::FleetSetup(e.into()));
    }
    info!(key = %tpm.tls_public().key_id(), "mTLS client key in the TPM");
    Ok(tpm.tls_signer())
}

/// What the link and the lifecycle tell the rest of the loop.
enum Wake {
    Job(Vec<u8>),
    Abort(String),
    Attest([u8; 32]),
    Metadata(dosegate_core::fleet::FleetTopic, Vec<u8>),
    Status,
    Stop(&'static str),
}

#[allow(clippy::too_many_lines)]
async fn serve(config: &Config, config_bytes: &[u8]) -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Runtime)?;
    if !config.holdings.trust_root.exists() {
        // A box fresh from the factory: nothing can be verified, so nothing is accepted. It stays
        // up (and reports itself unprovisioned) until a field engineer installs the trust root.
        warn!(
            trust_root = %config.holdings.trust_root.display(),
            "unprovisioned: no hub trust root; no job can be accepted until one is installed"
        );
        if notify::notify(std::env::var_os("NOTIFY_SOCKET"), State::Ready)? {
            info!("systemd notified: ready");
        }
        info!("dosegate running (unprovisioned)");
        let status = StatusFile::new(config);
        let mut tick = tokio::time::interval(STATUS_EVERY);
        let why = loop {
            tokio::select! {
                _ = term.recv() => break "SIGTERM",
                _ = int.recv() => break "SIGINT",
                _ = tick.tick() => status.write(false, "unprovisioned"),
            }
        };
        info!(signal = why, "dosegate stopping");
        notify::notify(std::env::var_os("NOTIFY_SOCKET"), State::Stopping)?;
        info!("dosegate stopped");
        return Ok(());
    }
    let held = read_holdings(config, config_bytes)?;
    let gw = GatewayId::new(config.gateway_id.as_str())
        .map_err(|e| RunError::FleetSetup(anyhow::anyhow!("gateway id: {e}")))?;

    // The TPM: keys, counter and the application PCR, measured before anything is signed.
    let tpm = Arc::new(Tpm::open(&tpm_config(config)).map_err(|e| RunError::Tpm(e.into()))?);
    let keys: &Tpm = &tpm;
    let state = &config.paths.state_dir;
    let pcr_log = state.join("pcr-log.cbor");
    let log =
        measure_digests(keys, &pcr_log, &held.measured).map_err(|e| RunError::Tpm(e.into()))?;
    info!(
        measurements = log.0.len(),
        "software state measured into the TPM"
    );

    // The ledger, the outbox it feeds, and the lifecycle over both.
    let ledger_dir = state.join("ledger");
    let mut ledger = Ledger::open(
        &ledger_dir,
        gw.as_str(),
        keys,
        LedgerOptions::default(),
        now_ms(),
    )
    .map_err(|e| RunError::Ledger(e.into()))?;
    let _ = ledger.take_written();
    let records = store::read_dir(&ledger_dir)
        .map_err(|e| RunError::Ledger(e.into()))?
        .records;
    let fleet = config.fleet.as_ref();
    let outbox_config = OutboxConfig {
        max_backlog_age_ms: fleet.map_or(24 * 3600, |f| f.max_backlog_age_s) * 1000,
        resend_after_ms: fleet.map_or(30, |f| f.resend_after_s) * 1000,
        ..OutboxConfig::default()
    };
    let mut fleet_state = FleetState::open(&state.join("fleet"), held.root.clone())
        .map_err(|e| RunError::FleetSetup(e.into()))?;
    // The kept receipt is checked against the keys in force: after a rotation of the hub's
    // `jobs` keys, the pinned root alone would no longer recognise it.
    let outbox = outbox::resume(
        &ledger_dir,
        fleet_state.keys_in_force(),
        &gw,
        &records,
        outbox_config,
        now_ms(),
    )
    .map_err(RunError::Ledger)?;
    let backlog = Backlog::new(
        &records,
        outbox.receipted().map_or(0, |(s, _)| s + 1),
        now_ms(),
    );
    let mut runner = JobRunner::new(
        ledger,
        &records,
        gw.as_str(),
        lifecycle::Holdings {
            policies_dir: config.holdings.policies_dir.clone(),
            models_dir: config.holdings.models_dir.clone(),
        },
        JobLimits {
            max_skew_s: config.jobs.clock_skew_s,
            ..JobLimits::default()
        },
        now_ms(),
    )
    .map_err(|e| RunError::Ledger(e.into()))?;
    drop(records);
    // Policies and models the hub sent earlier are used, and measured, like the files.
    let mut bundles = Vec::new();
    for p in fleet_state.policies() {
        bundles.push(hold_policy(&mut runner, p));
    }
    for m in fleet_state.models() {
        bundles.push(hold_model(&mut runner, m));
    }
    measure_more(keys, &pcr_log, &bundles).map_err(|e| RunError::Tpm(e.into()))?;
    for r in runner.take_closed_at_start() {
        log_report(&r);
    }
    info!(
        head = runner.head().next_seq,
        backlog = outbox.backlog(),
        "ledger open"
    );

    // The fleet link.
    let (ledger_tx, ledger_rx) = mpsc::channel::<LedgerEntry>(LEDGER_CHANNEL);
    let (inbound_tx, mut inbound_rx) = mpsc::channel::<Inbound>(16);
    let (status_tx, mut status_rx) = watch::channel(LinkStatus::default());
    // The keys the link verifies receipts with; renewed whenever fleet metadata changes them.
    let (trust_tx, trust_rx) = watch::channel(fleet_state.trust_in_force());
    let (stop_link_tx, stop_link_rx) = oneshot::channel::<()>();
    let (outbound_tx, outbound_rx) = mpsc::channel::<Outbound>(16);
    let link = match fleet {
        None => {
            warn!("no [fleet] table: not connected to a hub, no job can arrive");
            drop(ledger_rx);
            None
        }
        Some(f) => {
            let read = |p: &Path| {
                std::fs::read(p)
                    .with_context(|| format!("cannot read {}", p.display()))
                    .map_err(RunError::FleetSetup)
            };
            let tls = Arc::new(
                mqtt::tls_config(&read(&f.ca)?, &read(&f.cert)?, tls_signer(config, &tpm)?)
                    .map_err(|e| RunError::FleetSetup(e.into()))?,
            );
            let link_config = LinkConfig {
                gateway: gw.clone(),
                host: f.broker_host.clone(),
                port: f.broker_port,
                keep_alive: Duration::from_secs(f.keep_alive_s),
                session_expiry_s: 7 * 24 * 3600,
                versions: vec![SoftwareVersion {
                    name: "dosegate".into(),
                    version: env!("CARGO_PKG_VERSION").into(),
                }],
                measurements: log
                    .0
                    .iter()
                    .map(|m| Measurement {
                        name: m.what.as_str().to_owned(),
                        sha256: m.digest,
                    })
                    .collect(),
                insecure: config.insecure.is_some(),
            };
            Some(tokio::spawn(mqtt::run(
                link_config,
                tls,
                trust_rx,
                outbox,
                ledger_rx,
                inbound_tx,
                outbound_rx,
                status_tx,
                async {
                    let _ = stop_link_rx.await;
                },
            )))
        }
    };
    let delivery = Rc::new(RefCell::new(Delivery {
        backlog,
        pending: std::collections::VecDeque::new(),
        tx: ledger_tx,
    }));
    runner.set_sink(Box::new({
        let delivery = Rc::clone(&delivery);
        move |w| delivery.borrow_mut().push(w)
    }));

    // The devices.
    let mut printer = SerialPrintStation {
        settings: PrinterSettings::from_config(&config.printer),
    };
    let mut measure = DropFolderStation {
        dir: config
            .spectrometer
            .as_ref()
            .map_or_else(|| state.join("spectra"), |s| s.drop_dir.clone()),
        timeout: Duration::from_secs(config.spectrometer.as_ref().map_or(900, |s| s.timeout_s)),
        balance: config.balance.as_ref().map(|b| b.serial.clone()),
    };

    if notify::notify(std::env::var_os("NOTIFY_SOCKET"), State::Ready)? {
        info!("systemd notified: ready");
    }
    info!("dosegate running");
    let status_file = StatusFile::new(config);
    let mut tick = tokio::time::interval(STATUS_EVERY);
    let receipt_file = outbox::receipt_path(&ledger_dir);
    let mut kept_receipt: Option<Vec<u8>> = None;
    let mut jobs = std::collections::VecDeque::<Vec<u8>>::new();
    let mut later = Vec::<Inbound>::new();
    let (abort_tx, abort_rx) = watch::channel::<Option<String>>(None);
    let mut stopping = None;
    while stopping.is_none() {
        let wake = if let Some(m) = later.pop() {
            match m {
                Inbound::Attest(n) => Wake::Attest(n),
                Inbound::Metadata(t, b) => Wake::Metadata(t, b),
                Inbound::Job(b) => Wake::Job(b),
                Inbound::Abort(id) => Wake::Abort(id),
            }
        } else if let Some(job) = jobs.pop_front() {
            Wake::Job(job)
        } else {
            tokio::select! {
                _ = term.recv() => Wake::Stop("SIGTERM"),
                _ = int.recv() => Wake::Stop("SIGINT"),
                m = inbound_rx.recv(), if link.is_some() => match m {
                    Some(Inbound::Job(b)) => Wake::Job(b),
                    Some(Inbound::Abort(id)) => Wake::Abort(id),
                    Some(Inbound::Attest(n)) => Wake::Attest(n),
                    Some(Inbound::Metadata(t, b)) => Wake::Metadata(t, b),
                    None => Wake::Stop("fleet link ended"),
                },
                r = status_rx.changed() => if r.is_ok() { Wake::Status } else { Wake::Stop("fleet link ended") },
                _ = tick.tick() => Wake::Status,
            }
        };
        match wake {
            Wake::Stop(why) => stopping = Some(why),
            Wake::Status => {
                let s = status_rx.borrow_and_update().clone();
                status_file.write(s.connected, "idle");
                if let Some((seq, _)) = s.receipted {
                    delivery.borrow_mut().backlog.receipted(seq);
                }
                if let Some(bytes) = s.receipt
                    && kept_receipt.as_ref() != Some(&bytes)
                {
                    if let Err(e) = outbox::write_receipt(&receipt_file, &bytes) {
                        warn!(error = %e, "cannot keep the last receipt");
                    }
                    kept_receipt = Some(bytes);
                }
            }
            Wake::Abort(id) => {
                info!(job = id, "hub asked to abort a job that is not printing");
            }
            Wake::Attest(nonce) => match crate::attest::answer_challenge(keys, &gw, &nonce) {
                Ok(answer) => {
                    if outbound_tx.try_send(Outbound::Attest(answer)).is_err() {
                        warn!("attestation answer dropped: the link is busy");
                    } else {
                        info!(nonce = %hex::encode(nonce), "attestation challenge answered");
                    }
                }
                Err(e) => warn!(error = %e, "cannot answer the attestation challenge"),
            },
            Wake::Metadata(topic, bytes) => {
                let brought = apply_metadata(&mut fleet_state, &mut runner, topic, &bytes)
                    .map_err(|e| RunError::Ledger(e.into()))?;
                // A policy or model from the hub is measured before any job can use it.
                measure_more(keys, &pcr_log, &brought).map_err(|e| RunError::Tpm(e.into()))?;
                trust_tx.send_replace(fleet_state.trust_in_force());
            }
            Wake::Job(bytes) => {
                let now = now_ms();
                let admitted = delivery
                    .borrow()
                    .backlog
                    .admit(now, outbox_config.max_backlog_age_ms);
                let claimed = claimed_job_id(&bytes);
                let revoked = fleet_state.is_revoked(Revocable::Gateway(&gw))
                    || claimed
                        .as_deref()
                        .is_some_and(|id| fleet_state.is_revoked(Revocable::Job(id)));
                // A revocation list the gateway holds but that has expired may hide a newer
                // revocation (a withheld feed): no new job until a current one arrives.
                let stale_revocations = fleet_state
                    .revocation()
                    .and_then(|_| fleet_state.check_revocation_current(now / 1000).err());
                let report = if revoked {
                    runner.refuse_intake(
                        &bytes,
                        "revoked",
                        "the hub's revocation list names this gateway or this job",
                        now,
                    )
                } else if let Some(e) = stale_revocations {
                    runner.refuse_intake(&bytes, e.code(), &e.to_string(), now)
                } else if let Err(e) = admitted {
                    runner.refuse_intake(&bytes, "backlog-too-old", &e, now)
                } else {
                    let _ = abort_tx.send(None);
                    let mut aborts = abort_rx.clone();
                    status_file.write(status_rx.borrow().connected, "job");
                    let mut inbound = InboundDuringJob {
                        job_id: claimed,
                        later: &mut later,
                        status: &status_file,
                        link: status_rx.clone(),
                        tick: &mut tick,
                        rx: &mut inbound_rx,
                        jobs: &mut jobs,
                        abort: &abort_tx,
                        term: &mut term,
                        int: &mut int,
                        stopping: &mut stopping,
                    };
                    let stop = Box::pin(async move {
                        let _ = aborts.wait_for(Option::is_some).await;
                    });
                    let keys = fleet_state.keys_in_force();
                    let run =
                        runner.run_job(&bytes, keys, &mut printer, &mut measure, &now_ms, stop);
                    tokio::pin!(run);
                    loop {
                        tokio::select! {
                            r = &mut run => break r,
                            () = inbound.next(link.is_some()) => {}
                        }
                    }
                };
                match report {
                    Ok(r) => log_report(&r),
                    Err(e) => {
                        tracing::error!(code = e.code(), error = %e, "the lifecycle failed");
                        return Err(RunError::Ledger(e.into()));
                    }
                }
            }
        }
        delivery.borrow_mut().drain();
    }
    let why = stopping.unwrap_or("stop");
    info!(signal = why, "dosegate stopping");
    notify::notify(std::env::var_os("NOTIFY_SOCKET"), State::Stopping)?;
    let _ = stop_link_tx.send(());
    if let Some(link) = link {
        match tokio::time::timeout(Duration::from_secs(5), link).await {
            Ok(Ok(Ok(_))) => {}
            Ok(Ok(Err(e))) => warn!(error = %e, "fleet link ended with an error"),
            Ok(Err(e)) => warn!(error = %e, "fleet link task failed"),
            Err(_) => warn!("fleet link did not stop in time"),
        }
    }
    info!(peak_rss_kib = crate::peak_rss_kib(), "dosegate stopped");
    Ok(())
}

fn log_report(r: &lifecycle::JobReport) {
    info!(
        job = r.key,
        stage = r.stage_name(),
        seq = r.seq,
        report = %serde_json::to_string(r).unwrap_or_default(),
        "job done"
    );
}

/// Capacity of the channel from the ledger to the fleet link.
const LEDGER_CHANNEL: usize = 8192;

/// Verifies and applies one retained fleet message; what it changes is recorded as a
/// `trust-updated` ledger event, and a policy or model it brings is used from then on (and
/// returned, for the caller to measure). A refusal (rollback, wrong role, bad signature) is logged
/// with its code and changes nothing.
fn apply_metadata(
    state: &mut FleetState,
    runner: &mut JobRunner<'_>,
    topic: dosegate_core::fleet::FleetTopic,
    bytes: &[u8],
) -> Result<Vec<(Component, [u8; 32])>, lifecycle::RunnerError> {
    #[derive(serde::Serialize)]
    struct Body {
        topic: String,
        applied: String,
    }
    let mut brought = Vec::new();
    match state.apply(topic, bytes, now_ms() / 1000) {
        Ok(FleetApplied::Unchanged { .. }) => {}
        Ok(applied) => {
            if let FleetApplied::Policy { id, version, .. } = &applied
                && let Some(p) = state.policy(id, *version)
            {
                brought.push(hold_policy(runner, p));
            }
            if let FleetApplied::Model { id, .. } = &applied
                && let Some(m) = state.model(id)
            {
                brought.push(hold_model(runner, m));
            }
            info!(topic = ?topic, applied = ?applied, "fleet metadata applied");
            runner.record_gateway_event(
                dosegate_core::ledger::EventKind::TrustUpdated,
                &Body {
                    topic: format!("{topic:?}"),
                    applied: format!("{applied:?}"),
                },
                now_ms(),
            )?;
        }
        Err(e) => warn!(code = e.code(), error = %e, "fleet metadata refused"),
    }
    Ok(brought)
}

/// Hands a policy bundle from the hub to the runner; returns what must be measured before a job
/// uses it.
fn hold_policy(runner: &mut JobRunner<'_>, p: &VerifiedPolicyBundle) -> (Component, [u8; 32]) {
    runner.hold_policy(p.id(), p.toml().as_bytes());
    (Component::Policy, *p.sha256())
}

/// [`hold_policy`] for a model bundle.
fn hold_model(runner: &mut JobRunner<'_>, m: &VerifiedModelBundle) -> (Component, [u8; 32]) {
    runner.hold_model(m.id(), m.bytes());
    (Component::Model, *m.sha256())
}

/// Keeps `<state_dir>/status.json` current for `dosegate health` (at least every
/// [`STATUS_EVERY`]): whether a broker is configured and connected, whether the printer's
/// device is present, and what the gateway is doing.
struct StatusFile {
    state_dir: PathBuf,
    fleet_configured: bool,
    printer: PathBuf,
}

/// How often the status file is rewritten while nothing changes.
const STATUS_EVERY: Duration = Duration::from_secs(10);

impl StatusFile {
    fn new(config: &Config) -> Self {
        Self {
            state_dir: config.paths.state_dir.clone(),
            fleet_configured: config.fleet.is_some(),
            printer: config.printer.serial.clone(),
        }
    }

    fn write(&self, broker_connected: bool, state: &str) {
        use std::os::unix::fs::FileTypeExt as _;
        let status = crate::status::GatewayStatus {
            pid: std::process::id(),
            updated_ms: now_ms(),
            fleet_configured: self.fleet_configured,
            broker_connected,
            printer_link_up: std::fs::metadata(&self.printer)
                .is_ok_and(|m| m.file_type().is_char_device()),
            state: state.to_owned(),
        };
        if let Err(e) = crate::status::write(&self.state_dir, &status) {
            warn!(error = %e, "cannot write the status file");
        }
    }
}

/// The records on their way to the fleet link: each is timed for the backlog check and handed
/// over in order; what the channel cannot take now waits in `pending`.
struct Delivery {
    backlog: Backlog,
    pending: std::collections::VecDeque<LedgerEntry>,
    tx: mpsc::Sender<LedgerEntry>,
}

impl Delivery {
    fn push(&mut self, w: crate::ledger::WrittenRecord) {
        let now = now_ms();
        self.backlog.recorded(w.seq, now);
        self.pending.push_back(LedgerEntry {
            seq: w.seq,
            hash: w.hash,
            bytes: w.bytes,
            recorded_ms: now,
        });
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(e) = self.pending.pop_front() {
            match self.tx.try_send(e) {
                Ok(()) => {}
                Err(mpsc::error::TrySendError::Full(e)) => {
                    self.pending.push_front(e);
                    break;
                }
                // No fleet link: the records stay in the ledger and go out after a restart.
                Err(mpsc::error::TrySendError::Closed(_)) => {
                    self.pending.clear();
                    break;
                }
            }
        }
    }
}

/// While a job runs, the loop still listens: a hub abort for the job stops it, a SIGTERM stops
/// it and then the gateway, new jobs wait in the queue (at most [`MAX_QUEUED_JOBS`]).
struct InboundDuringJob<'a> {
    /// The id the running job claims (unverified: only used to match the hub's abort command,
    /// which the broker only accepts from the hub).
    job_id: Option<String>,
    /// Attestation challenges and fleet metadata that arrived during the job, handled after it.
    later: &'a mut Vec<Inbound>,
    status: &'a StatusFile,
    link: watch::Receiver<LinkStatus>,
    tick: &'a mut tokio::time::Interval,
    rx: &'a mut mpsc::Receiver<Inbound>,
    jobs: &'a mut std::collections::VecDeque<Vec<u8>>,
    abort: &'a watch::Sender<Option<String>>,
    term: &'a mut tokio::signal::unix::Signal,
    int: &'a mut tokio::signal::unix::Signal,
    stopping: &'a mut Option<&'static str>,
}

/// The job id a signed job claims, read without verifying it.
fn claimed_job_id(bytes: &[u8]) -> Option<String> {
    let limits = JobLimits::default();
    let envelope = dosegate_core::envelope::decode(
        bytes,
        dosegate_core::envelope::ContentType::Job,
        limits.max_envelope_bytes,
    )
    .ok()?;
    let job: dosegate_core::job::Job =
        dosegate_core::cbor::from_slice(envelope.unverified_payload(), limits.max_envelope_bytes)
            .ok()?;
    Some(job.job_id)
}

/// Jobs queued behind the one running; the hub re-sends what is refused for being busy.
const MAX_QUEUED_JOBS: usize = 8;

impl InboundDuringJob<'_> {
    async fn next(&mut self, linked: bool) {
        tokio::select! {
            _ = self.tick.tick() => self.status.write(self.link.borrow().connected, "job"),
            _ = self.term.recv() => {
                *self.stopping = Some("SIGTERM");
                let _ = self.abort.send(Some("shutdown".into()));
            }
            _ = self.int.recv() => {
                *self.stopping = Some("SIGINT");
                let _ = self.abort.send(Some("shutdown".into()));
            }
            m = self.rx.recv(), if linked => match m {
                Some(Inbound::Job(b)) if self.jobs.len() < MAX_QUEUED_JOBS => self.jobs.push_back(b),
                Some(Inbound::Job(_)) => warn!("job dropped: {MAX_QUEUED_JOBS} jobs already queued"),
                Some(Inbound::Abort(id)) if self.job_id.as_deref() == Some(id.as_str()) => {
                    info!(job = id, "hub abort");
                    let _ = self.abort.send(Some(id));
                }
                Some(Inbound::Abort(id)) => info!(job = id, "hub abort for a job that is not running"),
                Some(other) if self.later.len() < MAX_QUEUED_JOBS => self.later.push(other),
                Some(_) => warn!("fleet message dropped while a job runs: too many waiting"),
                None => std::future::pending::<()>().await,
            },
        }
    }
}

/// When each unreceipted record was made durable: new jobs are refused while the oldest is older
/// than the fleet policy allows (the hub has not confirmed what this gateway did).
#[derive(Debug)]
struct Backlog {
    pending: std::collections::VecDeque<(u64, u64)>,
}

impl Backlog {
    fn new(records: &[Vec<u8>], first_unreceipted: u64, now_ms: u64) -> Self {
        // Records from before this start count from now: their original time is in the record,
        // but a gateway that was off must not refuse jobs for the time it was off.
        let pending = (first_unreceipted..records.len() as u64)
            .map(|seq| (seq, now_ms))
            .collect();
        Self { pending }
    }

    fn recorded(&mut self, seq: u64, now_ms: u64) {
        self.pending.push_back((seq, now_ms));
    }

    fn receipted(&mut self, seq: u64) {
        while self.pending.front().is_some_and(|(s, _)| *s <= seq) {
            self.pending.pop_front();
        }
    }

    fn admit(&self, now_ms: u64, max_age_ms: u64) -> Result<(), String> {
        match self.pending.front() {
            Some((seq, at)) if now_ms.saturating_sub(*at) > max_age_ms => Err(format!(
                "ledger record {seq} has waited {} s for the hub's receipt (at most {} s)",
                now_ms.saturating_sub(*at) / 1000,
                max_age_ms / 1000
            )),
            _ => Ok(()),
        }
    }
}

/// Reads at most `MAX_CONFIG_BYTES + 1` bytes, so an oversized file is refused without reading
/// it whole, and returns the parsed configuration with the SHA-256 of its bytes.
fn load(path: &Path) -> Result<(Config, String, Vec<u8>), RunError> {
    let unreadable = |source| RunError::ConfigUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let invalid = |source| RunError::ConfigInvalid {
        path: path.to_path_buf(),
        source,
    };
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(invalid(ConfigError::TooLarge { len: bytes.len() }));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        invalid(ConfigError::Syntax {
            reason: format!("not UTF-8: {}", e.utf8_error()),
        })
    })?;
    let config = Config::parse(&text).map_err(invalid)?;
    let digest = hex::encode(Sha256::digest(text.as_bytes()));
    Ok((config, digest, text.into_bytes()))
}

fn note_device(what: &str, path: &Path) {
    if path.exists() {
        info!(device = %path.display(), "{what} present");
    } else {
        warn!(device = %path.display(), "{what} absent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("dosegate-run-{name}-{}", std::process::id()));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn loads_the_example_and_digests_its_bytes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gateway.toml");
        let (config, digest, _) = load(&path).expect("valid");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(digest, hex::encode(Sha256::digest(&bytes)));
        assert!(!config.gateway_id.as_str().is_empty());
    }

    #[test]
    fn refuses_an_oversized_file_with_its_size() {
        let path = temp_file("big", &vec![b'#'; MAX_CONFIG_BYTES + 10]);
        let err = load(&path).unwrap_err();
        assert!(
            matches!(&err, RunError::ConfigInvalid { source: ConfigError::TooLarge { len }, .. } if *len == MAX_CONFIG_BYTES + 1),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), 3);
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn refuses_non_utf8() {
        let path = temp_file("utf8", b"gateway_id = \"\xff\"");
        let err = load(&path).unwrap_err();
        assert_eq!(err.code(), "config-invalid");
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn reports_a_missing_file_as_unreadable() {
        let err = load(Path::new("/nonexistent/dosegate.toml")).unwrap_err();
        assert_eq!(err.code(), "config-unreadable");
        assert!(
            error_chain(&err).contains("No such file"),
            "{}",
            error_chain(&err)
        );
    }
}

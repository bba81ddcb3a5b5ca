//! `dosegate-hub fleet …`: the hub operators' commands for the fleet link — the PKI, the broker's
//! configuration, the serving hub (store, receipts, resend-from), publishing jobs and commands,
//! and a status report of what the hub holds.
//!
//! The work is in [`crate::pki`], [`crate::broker`] and [`crate::fleet`]; this module parses
//! arguments and prints (text for people, `--json` for machines).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use dosegate_core::fleet::{Command as HubOp, GatewayId, MAX_JOB_MESSAGE_BYTES, SpokeTopic, Topic};
use dosegate_core::trust::Role;
use rand_core::{OsRng, RngCore as _};
use tokio::sync::mpsc;

use crate::broker::{self, BrokerOptions};
use crate::fleet::{self, HubEvent, HubService};
use crate::hub::HubHome;
use crate::pki::{HUB_CLIENT_CN, HUB_PUBLISHER_CN, Pki};

const EXAMPLES: &str = "\
Examples:
  dosegate-hub fleet pki-init --hub hub --broker-name localhost --broker-name 127.0.0.1
  dosegate-hub fleet enroll --hub hub --gateway-id spoke-01
  dosegate-hub fleet broker-config --hub hub --dir broker --port 8883
  mosquitto -c broker/mosquitto.conf
  dosegate-hub fleet serve --hub hub --broker localhost:8883 --json --allow-insecure
  dosegate-hub fleet publish-job --hub hub --broker localhost:8883 --gateway-id spoke-01 --job job.cose
  dosegate-hub fleet command --hub hub --broker localhost:8883 --gateway-id spoke-01 --resend-from 0
  dosegate-hub fleet status --hub hub --json

Exit codes: 0 done; 2 refused or failed (the reason is printed).";

/// The fleet link at the hub: PKI, broker configuration, receiving events, sending jobs.
#[derive(Debug, Args)]
#[command(after_help = EXAMPLES)]
pub struct FleetArgs {
    #[command(subcommand)]
    command: FleetCommand,
}

#[derive(Debug, Subcommand)]
enum FleetCommand {
    /// Create the fleet CA under HUB/pki, the broker's server certificate and the hub's client
    /// certificates.
    PkiInit {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// Names of the broker (DNS names or IP addresses) for its certificate.
        #[arg(long = "broker-name", value_name = "NAME", default_values_t = ["localhost".to_owned(), "127.0.0.1".to_owned()])]
        broker_names: Vec<String>,
    },
    /// Issue a gateway's client certificate (CN = gateway id). Writes a file key: for the
    /// insecure development mode and the demo only (in production the key is made in the TPM).
    Enroll {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The gateway id ([a-z0-9-], 1..64).
        #[arg(long, value_name = "ID")]
        gateway_id: String,
    },
    /// Write mosquitto's configuration and ACL (TLS 1.3, client certificates, per-gateway ACL).
    BrokerConfig {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// Directory for mosquitto.conf, acl, persistence and log.
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        /// TCP port of the TLS listener.
        #[arg(long, default_value_t = 8883)]
        port: u16,
        /// Address to bind.
        #[arg(long, default_value = "127.0.0.1")]
        bind: String,
        /// User mosquitto drops to when started as root.
        #[arg(long)]
        user: Option<String>,
    },
    /// Serve the hub: store every gateway's events de-duplicated, send receipts, ask for gaps.
    Serve {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The broker, HOST:PORT (HOST must match its certificate).
        #[arg(long, default_value = "localhost:8883")]
        broker: String,
        /// Stop after this long (default: until Ctrl-C).
        #[arg(long = "for", value_parser = humantime::parse_duration)]
        run_for: Option<Duration>,
        /// One JSON object per event on stdout.
        #[arg(long)]
        json: bool,
        /// INSECURE: accept ledgers signed by software keys (gateways in development mode).
        #[arg(long)]
        allow_insecure: bool,
    },
    /// Publish a signed job (from `dosegate-hub sign-job`) to a gateway.
    PublishJob {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The broker, HOST:PORT.
        #[arg(long, default_value = "localhost:8883")]
        broker: String,
        /// The gateway.
        #[arg(long, value_name = "ID")]
        gateway_id: String,
        /// The signed job (COSE_Sign1).
        #[arg(long, value_name = "JOB")]
        job: PathBuf,
    },
    /// Send a command to a gateway: exactly one of the options.
    Command {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The broker, HOST:PORT.
        #[arg(long, default_value = "localhost:8883")]
        broker: String,
        /// The gateway.
        #[arg(long, value_name = "ID")]
        gateway_id: String,
        /// Ask the gateway to re-send its ledger from this seq.
        #[arg(long, value_name = "SEQ", group = "op")]
        resend_from: Option<u64>,
        /// Send a fresh attestation nonce (the gateway answers with a TPM quote on up/attest).
        #[arg(long, group = "op")]
        attest: bool,
        /// Ask the gateway to publish its birth message again.
        #[arg(long, group = "op")]
        rebirth: bool,
        /// Abort this job.
        #[arg(long, value_name = "JOB_ID", group = "op")]
        abort: Option<String>,
    },
    /// What the hub holds for each gateway (from its store).
    Status {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// INSECURE: accept ledgers signed by software keys (gateways in development mode).
        #[arg(long)]
        allow_insecure: bool,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
}

fn now() -> Result<u64> {
    Ok(SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs())
}

fn broker_addr(broker: &str) -> Result<(String, u16)> {
    let (host, port) = broker
        .rsplit_once(':')
        .with_context(|| format!("--broker {broker:?} is not HOST:PORT"))?;
    let port = port
        .parse()
        .with_context(|| format!("--broker port {port:?} is not a number"))?;
    Ok((host.to_owned(), port))
}

fn runtime() -> Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn options(hub: &Path, cn: &str, broker: &str) -> Result<rumqttc::v5::MqttOptions> {
    let pki = Pki::open(&hub.join("pki"))?;
    let files = if cn == HUB_CLIENT_CN {
        pki.hub_files()
    } else {
        pki.publisher_files()
    };
    let tls = fleet::tls_config(&pki.ca_cert(), &files)?;
    let (host, port) = broker_addr(broker)?;
    Ok(fleet::mqtt_options(cn, &host, port, Arc::new(tls)))
}

fn service(hub: &Path, allow_insecure: bool) -> Result<HubService> {
    let home = HubHome::open(hub)?;
    let root = home.trusted_root(now()?)?;
    let keys = home.role_keys(Role::Jobs, &root)?;
    if allow_insecure {
        tracing::warn!("INSECURE: accepting ledgers signed by software keys (development mode)");
    }
    HubService::open(&hub.join("fleet"), keys, allow_insecure)
}

/// Runs one `dosegate-hub fleet` command.
#[allow(clippy::too_many_lines)]
pub fn run(args: FleetArgs) -> Result<()> {
    match args.command {
        FleetCommand::PkiInit { hub, broker_names } => {
            HubHome::open(&hub)?;
            let pki = Pki::init(&hub.join("pki"), now()?)?;
            let broker = pki.issue_broker(&broker_names, now()?)?;
            let (client, publisher) = pki.issue_hub_clients(now()?)?;
            println!(
                "fleet CA in {}\n  broker:    {}\n  hub:       {}\n  publisher: {}",
                pki.dir().display(),
                broker.cert.display(),
                client.cert.display(),
                publisher.cert.display()
            );
        }
        FleetCommand::Enroll { hub, gateway_id } => {
            let gw = GatewayId::new(&gateway_id)?;
            let pki = Pki::open(&hub.join("pki"))?;
            let files = pki.issue_gateway(&gw, now()?)?;
            println!(
                "gateway {gw}: certificate {}, key {} (file key: insecure development mode only)",
                files.cert.display(),
                files.key.display()
            );
        }
        FleetCommand::BrokerConfig {
            hub,
            dir,
            port,
            bind,
            user,
        } => {
            let pki = Pki::open(&hub.join("pki"))?;
            let path = broker::write(
                &pki,
                &BrokerOptions {
                    bind,
                    port,
                    dir,
                    user,
                },
            )?;
            println!(
                "wrote {} (run: mosquitto -c {})",
                path.display(),
                path.display()
            );
        }
        FleetCommand::Serve {
            hub,
            broker,
            run_for,
            json,
            allow_insecure,
        } => {
            let service = service(&hub, allow_insecure)?;
            let options = options(&hub, HUB_CLIENT_CN, &broker)?;
            let (tx, mut rx) = mpsc::unbounded_channel::<HubEvent>();
            runtime()?.block_on(async move {
                let stop = async move {
                    match run_for {
                        Some(d) => tokio::time::sleep(d).await,
                        None => {
                            let _ = tokio::signal::ctrl_c().await;
                        }
                    }
                };
                let printer = tokio::spawn(async move {
                    while let Some(event) = rx.recv().await {
                        if json {
                            println!("{}", serde_json::to_string(&event).unwrap_or_default());
                        } else {
                            println!("{}", describe(&event));
                        }
                    }
                });
                let served = fleet::serve(service, options, tx, stop).await;
                let _ = printer.await;
                served.map(|_| ())
            })?;
        }
        FleetCommand::PublishJob {
            hub,
            broker,
            gateway_id,
            job,
        } => {
            let gw = GatewayId::new(&gateway_id)?;
            let bytes = std::fs::read(&job).with_context(|| format!("{}", job.display()))?;
            if bytes.len() > MAX_JOB_MESSAGE_BYTES {
                bail!(
                    "job of {} bytes exceeds the fleet link's cap of {MAX_JOB_MESSAGE_BYTES}",
                    bytes.len()
                );
            }
            let topic = Topic::Spoke(gw.clone(), SpokeTopic::Job).name();
            let options = options(&hub, HUB_PUBLISHER_CN, &broker)?;
            runtime()?.block_on(fleet::publish_once(
                options,
                topic.clone(),
                bytes,
                Duration::from_secs(10),
            ))?;
            println!("published {} to {topic}", job.display());
        }
        FleetCommand::Command {
            hub,
            broker,
            gateway_id,
            resend_from,
            attest,
            rebirth,
            abort,
        } => {
            let gw = GatewayId::new(&gateway_id)?;
            let op = match (resend_from, attest, rebirth, abort) {
                (Some(seq), false, false, None) => HubOp::ResendFrom(seq),
                (None, true, false, None) => {
                    let mut nonce = [0u8; 32];
                    OsRng.fill_bytes(&mut nonce);
                    HubOp::Attest(nonce)
                }
                (None, false, true, None) => HubOp::Rebirth,
                (None, false, false, Some(job)) => HubOp::Abort(job),
                _ => bail!("give exactly one of --resend-from, --attest, --rebirth, --abort"),
            };
            let (topic, payload, _) = fleet::command(&gw, op.clone())?;
            let options = options(&hub, HUB_PUBLISHER_CN, &broker)?;
            runtime()?.block_on(fleet::publish_once(
                options,
                topic.clone(),
                payload,
                Duration::from_secs(10),
            ))?;
            println!("sent {op:?} to {topic}");
        }
        FleetCommand::Status {
            hub,
            json,
            allow_insecure,
        } => {
            let service = service(&hub, allow_insecure)?;
            let rows = service.status();
            if json {
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else if rows.is_empty() {
                println!("no gateway has delivered events yet");
            } else {
                for r in rows {
                    println!(
                        "{}: {} record(s) stored, verified and receipted up to seq {}{}",
                        r.gateway,
                        r.stored,
                        r.covered_seq
                            .map_or_else(|| "-".to_owned(), |s| s.to_string()),
                        r.failed
                            .map_or_else(String::new, |f| format!(" — LEDGER FAILED: {f}"))
                    );
                }
            }
        }
    }
    Ok(())
}

fn describe(event: &HubEvent) -> String {
    match event {
        HubEvent::Stored { gateway, seq } => format!("{gateway}: stored seq {seq}"),
        HubEvent::Duplicate { gateway, seq } => format!("{gateway}: duplicate seq {seq} ignored"),
        HubEvent::Receipted { gateway, seq } => format!("{gateway}: receipt up to seq {seq}"),
        HubEvent::ResendAsked { gateway, from } => format!("{gateway}: resend-from {from} asked"),
        HubEvent::Refused { gateway, reason } => format!("{gateway}: REFUSED {reason}"),
        HubEvent::Birth { gateway, next } => format!("{gateway}: birth (ledger next seq {next})"),
        HubEvent::Death { gateway, bd } => format!("{gateway}: death (session {bd})"),
        HubEvent::Attest { gateway, bytes } => format!("{gateway}: attestation ({bytes} bytes)"),
    }
}

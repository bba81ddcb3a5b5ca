//! `dosegate-hub fleet …`: the hub operators' commands for the fleet link — the PKI, the broker's
//! configuration, the serving hub (store, receipts, resend-from), publishing jobs and commands,
//! and a status report of what the hub holds.
//!
//! The work is in [`crate::pki`], [`crate::broker`] and [`crate::fleet`]; this module parses
//! arguments and prints (text for people, `--json` for machines).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use clap::{Args, Subcommand};
use dosegate_core::attest::{Component, GoldenValues};
use dosegate_core::cbor;
use dosegate_core::envelope::KeyId;
use dosegate_core::fleet::metadata::{MAX_REVOCATION_BYTES, RevocationList};
use dosegate_core::fleet::{AttestAnswerError, AttestedGateway, FLEET_FORMAT_VERSION, FleetTopic};
use dosegate_core::fleet::{Command as HubOp, GatewayId, MAX_JOB_MESSAGE_BYTES, SpokeTopic, Topic};
use dosegate_core::trust::Role;
use rand_core::{OsRng, RngCore as _};
use serde::Deserialize;
use tokio::sync::mpsc;

use crate::broker::{self, BrokerOptions};
use crate::fleet::{self, HubEvent, HubService};
use crate::hub::HubHome;
use crate::pki::{HUB_CLIENT_CN, HUB_PUBLISHER_CN, Pki};

const EXAMPLES: &str = "\
Examples:
  dosegate-hub fleet pki-init --hub hub --broker-name localhost --broker-name 127.0.0.1
  dosegate tpm enroll-request --gateway-id spoke-01 --out spoke-01.enroll     (on the box)
  dosegate-hub fleet enroll --hub hub --gateway-id spoke-01 --request spoke-01.enroll
  dosegate-hub fleet enroll --hub hub --gateway-id dev-01        (file key: development only)
  dosegate-hub fleet broker-config --hub hub --dir broker --port 8883
  mosquitto -c broker/mosquitto.conf
  dosegate-hub fleet serve --hub hub --broker localhost:8883 --json --allow-insecure
  dosegate-hub fleet publish-job --hub hub --broker localhost:8883 --gateway-id spoke-01 --job job.cose
  dosegate-hub fleet command --hub hub --broker localhost:8883 --gateway-id spoke-01 --resend-from 0
  dosegate-hub fleet attest --hub hub --broker localhost:8883 --gateway-id spoke-01 --golden golden.toml
  dosegate-hub fleet publish-policy --hub hub --broker localhost:8883 --policy policies/fdm-hctz-printlet.toml
  dosegate-hub fleet publish-model --hub hub --broker localhost:8883 --model models/nir-dyrby2002.cbor
  dosegate-hub fleet revoke --hub hub --broker localhost:8883 --job spoke-01-7-0a1b2c3d --lifetime 7d
  dosegate-hub fleet publish-root --hub hub --broker localhost:8883 --rotate --lifetime 365d
  dosegate-hub fleet status --hub hub --json

Exit codes: 0 done (attest: trusted); 1 attest: the answer was refused; 2 refused or failed
(the reason is printed).";

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
    /// Issue a gateway's client certificate (CN = gateway id). With --request (from `dosegate
    /// tpm enroll-request` on the box): for the TPM-held key, keeping the AK for attestation.
    /// Without: a file key, for the insecure development mode and the demo only.
    Enroll {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The gateway id ([a-z0-9-], 1..64).
        #[arg(long, value_name = "ID")]
        gateway_id: String,
        /// The gateway's enrollment request (its TPM-held AK and mTLS key, proof of possession).
        #[arg(long, value_name = "FILE")]
        request: Option<PathBuf>,
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
    /// Challenge a gateway: send a fresh nonce, wait for its TPM quote, verify it (exit 0
    /// trusted, 1 refused, 2 no answer or error).
    Attest {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The broker, HOST:PORT.
        #[arg(long, default_value = "localhost:8883")]
        broker: String,
        /// The gateway (enrolled with `enroll --request`: its AK verifies the quote).
        #[arg(long, value_name = "ID")]
        gateway_id: String,
        /// Golden measurements (TOML: `[golden]` with hex SHA-256 lists per component: binary,
        /// config, trust-root, policy, model); every logged measurement must be one of them.
        #[arg(long, value_name = "FILE")]
        golden: Option<PathBuf>,
        /// How long to wait for the answer.
        #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
        timeout: Duration,
        /// JSON verdict.
        #[arg(long)]
        json: bool,
    },
    /// Publish the trust-root chain (retained on fleet/down/root); with --rotate, first make the
    /// next root version (same keys and roles, new expiry).
    PublishRoot {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The broker, HOST:PORT.
        #[arg(long, default_value = "localhost:8883")]
        broker: String,
        /// Rotate first: version + 1, expiring after --lifetime.
        #[arg(long)]
        rotate: bool,
        /// Lifetime of a rotated root.
        #[arg(long, default_value = "365d", value_parser = humantime::parse_duration)]
        lifetime: Duration,
    },
    /// Sign a policy (design-space TOML) with the policies keys and publish it retained on
    /// fleet/down/policies/{id}. Its version must be above the one gateways hold.
    PublishPolicy {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The broker, HOST:PORT.
        #[arg(long, default_value = "localhost:8883")]
        broker: String,
        /// The policy TOML.
        #[arg(long, value_name = "FILE")]
        policy: PathBuf,
    },
    /// Sign a validated PAT model with the models keys and publish it retained on
    /// fleet/down/models/{id}.
    PublishModel {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The broker, HOST:PORT.
        #[arg(long, default_value = "localhost:8883")]
        broker: String,
        /// The model file (CBOR).
        #[arg(long, value_name = "FILE")]
        model: PathBuf,
    },
    /// Add to the revocation list (kept in HUB/revocation.cbor), sign its next version with the
    /// revocation keys, and publish it retained on fleet/down/revocation. With nothing to add it
    /// re-signs the list with a fresh expiry (do so before it expires).
    Revoke {
        /// The hub home.
        #[arg(long, value_name = "HUB")]
        hub: PathBuf,
        /// The broker, HOST:PORT.
        #[arg(long, default_value = "localhost:8883")]
        broker: String,
        /// Revoke a hub key (hex key id, any role).
        #[arg(long = "key", value_name = "KEY_ID")]
        keys: Vec<String>,
        /// Revoke a gateway (it refuses new jobs).
        #[arg(long = "gateway", value_name = "ID")]
        gateways: Vec<String>,
        /// Revoke a job id.
        #[arg(long = "job", value_name = "JOB_ID")]
        jobs: Vec<String>,
        /// How long the list stays valid; gateways refuse new jobs once it expired.
        #[arg(long, default_value = "7d", value_parser = humantime::parse_duration)]
        lifetime: Duration,
        /// Sign and write, but do not publish.
        #[arg(long)]
        no_publish: bool,
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
        FleetCommand::Enroll {
            hub,
            gateway_id,
            request: Some(request),
        } => {
            let gw = GatewayId::new(&gateway_id)?;
            let pki = Pki::open(&hub.join("pki"))?;
            let bytes =
                std::fs::read(&request).with_context(|| format!("{}", request.display()))?;
            let cert = pki.enroll_gateway(&gw, &bytes, now()?)?;
            let id = pki.gateway_identity(&gw)?;
            println!(
                "gateway {gw}: certificate {} for its TPM-held mTLS key {}; attestation key {} kept",
                cert.display(),
                id.tls_key().key_id(),
                id.ak().key().key_id()
            );
        }
        FleetCommand::Enroll {
            hub,
            gateway_id,
            request: None,
        } => {
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
        FleetCommand::Attest {
            hub,
            broker,
            gateway_id,
            golden,
            timeout,
            json,
        } => {
            let gw = GatewayId::new(&gateway_id)?;
            let identity = Pki::open(&hub.join("pki"))?.gateway_identity(&gw)?;
            let golden = golden.as_deref().map(load_golden).transpose()?;
            let mut nonce = [0u8; 32];
            OsRng.fill_bytes(&mut nonce);
            let options = options(&hub, HUB_PUBLISHER_CN, &broker)?;
            let verdict = runtime()?.block_on(fleet::attest(
                options,
                &gw,
                identity.ak().key(),
                nonce,
                golden.as_ref(),
                timeout,
            ))?;
            let trusted = verdict.is_ok();
            print_verdict(&gw, &nonce, &verdict, json)?;
            if !trusted {
                std::process::exit(1);
            }
        }
        FleetCommand::PublishRoot {
            hub,
            broker,
            rotate,
            lifetime,
        } => {
            let home = HubHome::open(&hub)?;
            if rotate {
                let v = fleet::rotate_root(&home, lifetime.as_secs(), now()?)?;
                println!("trust root rotated to version {v}");
            }
            let chain = fleet::root_chain(&hub)?;
            publish_meta(&hub, &broker, &Topic::Fleet(FleetTopic::Root).name(), chain)?;
        }
        FleetCommand::PublishPolicy {
            hub,
            broker,
            policy,
        } => {
            let home = HubHome::open(&hub)?;
            let keys = home.role_keys(Role::Policies, &home.trusted_root(now()?)?)?;
            let text = std::fs::read_to_string(&policy)
                .with_context(|| format!("{}", policy.display()))?;
            let (topic, bytes) = fleet::sign_policy_bundle(&text, &keys)?;
            publish_meta(&hub, &broker, &topic, bytes)?;
        }
        FleetCommand::PublishModel { hub, broker, model } => {
            let home = HubHome::open(&hub)?;
            let keys = home.role_keys(Role::Models, &home.trusted_root(now()?)?)?;
            let bytes = std::fs::read(&model).with_context(|| format!("{}", model.display()))?;
            let (topic, bytes) = fleet::sign_model_bundle(&bytes, &keys)?;
            publish_meta(&hub, &broker, &topic, bytes)?;
        }
        FleetCommand::Revoke {
            hub,
            broker,
            keys,
            gateways,
            jobs,
            lifetime,
            no_publish,
        } => {
            let home = HubHome::open(&hub)?;
            let signers = home.role_keys(Role::Revocation, &home.trusted_root(now()?)?)?;
            let state = hub.join("revocation.cbor");
            let mut list: RevocationList = if state.is_file() {
                cbor::from_slice(&std::fs::read(&state)?, MAX_REVOCATION_BYTES)
                    .with_context(|| format!("{}", state.display()))?
            } else {
                RevocationList {
                    v: FLEET_FORMAT_VERSION,
                    ..RevocationList::default()
                }
            };
            for k in &keys {
                let bytes = hex::decode(k).with_context(|| format!("--key {k} is not hex"))?;
                list.keys.insert(
                    KeyId::from_slice(&bytes)
                        .with_context(|| format!("--key {k} is not a 32-byte key id"))?,
                );
            }
            for g in &gateways {
                list.gateways.insert(GatewayId::new(g)?);
            }
            list.jobs.extend(jobs);
            list.version = list.version.checked_add(1).context("version overflow")?;
            list.expires = now()?.saturating_add(lifetime.as_secs());
            let bytes = fleet::sign_revocation(&list, &signers)?;
            crate::hub::write_atomic(&state, &cbor::to_vec(&list)?, false)?;
            println!(
                "revocation list v{}: {} key(s), {} gateway(s), {} job(s), expires {}",
                list.version,
                list.keys.len(),
                list.gateways.len(),
                list.jobs.len(),
                list.expires
            );
            if !no_publish {
                publish_meta(
                    &hub,
                    &broker,
                    &Topic::Fleet(FleetTopic::Revocation).name(),
                    bytes,
                )?;
            }
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

/// Publishes signed metadata retained, as the hub's publisher.
fn publish_meta(hub: &Path, broker: &str, topic: &str, bytes: Vec<u8>) -> Result<()> {
    let options = options(hub, HUB_PUBLISHER_CN, broker)?;
    let len = bytes.len();
    runtime()?.block_on(fleet::publish_retained(
        options,
        topic.to_owned(),
        bytes,
        Duration::from_secs(20),
    ))?;
    println!("published {len} bytes retained on {topic}");
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GoldenFile {
    golden: BTreeMap<Component, Vec<String>>,
}

/// Reads golden measurements: `[golden]` with a list of hex SHA-256 digests per component.
fn load_golden(path: &Path) -> Result<GoldenValues> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    if text.len() > 1024 * 1024 {
        bail!("{} is larger than 1 MiB", path.display());
    }
    let file: GoldenFile =
        toml::from_str(&text).with_context(|| format!("{} is invalid", path.display()))?;
    let mut golden = GoldenValues::default();
    for (component, digests) in file.golden {
        let set = digests
            .iter()
            .map(|d| {
                let bytes = hex::decode(d).context("golden digest is not hex")?;
                <[u8; 32]>::try_from(bytes.as_slice()).context("golden digest is not 32 bytes")
            })
            .collect::<Result<_>>()?;
        golden.0.insert(component, set);
    }
    Ok(golden)
}

fn print_verdict(
    gw: &GatewayId,
    nonce: &[u8; 32],
    verdict: &Result<AttestedGateway, AttestAnswerError>,
    json: bool,
) -> Result<()> {
    let view = match verdict {
        Ok(a) => {
            let (pcr, value) = a.pcr();
            let clock = a.quote().info().clock;
            serde_json::json!({
                "gateway": gw.as_str(),
                "verdict": "trusted",
                "nonce": hex::encode(nonce),
                "pcr": pcr,
                "pcr_value": hex::encode(value),
                "golden_checked": a.golden_checked(),
                "reset_count": clock.reset_count,
                "restart_count": clock.restart_count,
                "measurements": a.log().0.iter().map(|m| serde_json::json!({
                    "what": m.what.as_str(),
                    "sha256": hex::encode(m.digest),
                })).collect::<Vec<_>>(),
            })
        }
        Err(e) => serde_json::json!({
            "gateway": gw.as_str(),
            "verdict": "refused",
            "nonce": hex::encode(nonce),
            "code": e.code(),
            "reason": e.to_string(),
        }),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&view)?);
        return Ok(());
    }
    match verdict {
        Ok(a) => {
            let (pcr, value) = a.pcr();
            println!(
                "{gw}: TRUSTED — quote by its enrolled AK over our nonce; PCR {pcr} = {} replays \
                 its {} measurement(s){}",
                hex::encode(value),
                a.log().0.len(),
                if a.golden_checked() {
                    ", all golden"
                } else {
                    " (no golden values given)"
                }
            );
            for m in &a.log().0 {
                println!("  {:<10} {}", m.what.as_str(), hex::encode(m.digest));
            }
        }
        Err(e) => println!("{gw}: REFUSED [{}] {e}", e.code()),
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

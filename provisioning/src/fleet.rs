//! The hub's side of the fleet link: receive gateways' sealed ledger records, store them
//! de-duplicated, send signed receipts, ask for what is missing, publish jobs and commands.
//!
//! ```text
//! HUB/fleet/<gw>/events/<seq, 20 digits>.cose   every stored record, byte for byte
//! HUB/fleet/<gw>/birth.cbor                     the last birth message
//! HUB/fleet/<gw>/tampering/<seq>-<hash>.cose    records refused as tampering (evidence)
//! ```
//!
//! The decisions (duplicate, tampering, gap, what a receipt covers) are the core's
//! [`Inbox`]; this module stores a record (fsync'd) **before** it signs a receipt covering it,
//! rebuilds the inbox from the store at start, and moves bytes over MQTT (TLS 1.3, the hub's
//! client certificate). Receipts are retained on `spoke/{gw}/down/ack`, so a gateway that
//! reconnects learns at once how far the hub has stored. It does not verify the gateway's event
//! signatures or the events themselves (the ledger verifier does, from the stored records).

use std::collections::BTreeMap;
use std::fs;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result, bail};
use dosegate_core::attest::GoldenValues;
use dosegate_core::cbor;
use dosegate_core::envelope::{self, ContentType, PublicKey, Signer, SoftwareKey};
use dosegate_core::fleet::attest::verify_answer;
use dosegate_core::fleet::metadata::{
    MAX_MODEL_BUNDLE_BYTES, MAX_ROOT_CHAIN, ModelBundle, PolicyBundle, RevocationList,
    encode_root_chain,
};
use dosegate_core::fleet::{
    AttestAnswer, AttestAnswerError, AttestedGateway, Birth, Command, Death, EntryHeader,
    FLEET_FORMAT_VERSION, FleetTopic, GatewayId, HubCommand, Inbox, InboxError,
    MAX_EVENT_MESSAGE_BYTES, MAX_JOB_MESSAGE_BYTES, ReceiptPayload, Received, SpokeTopic, Topic,
    receipt, wire,
};
use dosegate_core::ledger::{LedgerTrust, Verifier};
use dosegate_core::trust::Role;
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::Packet;
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use rustls::ClientConfig;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

use crate::hub::{HubHome, write_atomic};
use crate::pki::{CertFiles, HUB_CLIENT_CN};

/// TLS 1.3-only client configuration from PEM files (the hub's key is a file; an HSM later).
pub fn tls_config(ca: &Path, client: &CertFiles) -> Result<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).context("fleet CA")? {
        roots.add(c.context("fleet CA")?)?;
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&client.cert)
        .with_context(|| format!("{}", client.cert.display()))?
        .collect::<Result<_, _>>()?;
    let key = PrivateKeyDer::from_pem_file(&client.key)
        .with_context(|| format!("{}", client.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)?;
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// MQTT v5 options for a hub-side client with `client_id`.
pub fn mqtt_options(client_id: &str, host: &str, port: u16, tls: Arc<ClientConfig>) -> MqttOptions {
    let mut options = MqttOptions::new(client_id, host, port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    options.set_keep_alive(Duration::from_secs(10));
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(3600));
    let max = u32::try_from(MAX_JOB_MESSAGE_BYTES + 64 * 1024).unwrap_or(u32::MAX);
    options.set_max_packet_size(Some(max));
    options.set_connection_timeout(10);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    options
}

/// What the hub did with one message (reported to the operator or a test).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum HubEvent {
    /// A new record was stored.
    Stored {
        /// The gateway.
        gateway: String,
        /// Its seq.
        seq: u64,
    },
    /// A record already stored arrived again and was ignored.
    Duplicate {
        /// The gateway.
        gateway: String,
        /// Its seq.
        seq: u64,
    },
    /// A receipt was sent.
    Receipted {
        /// The gateway.
        gateway: String,
        /// The covered seq.
        seq: u64,
    },
    /// A gap was found and resend-from asked.
    ResendAsked {
        /// The gateway.
        gateway: String,
        /// From this seq.
        from: u64,
    },
    /// A record was refused (tampering, broken chain, malformed…).
    Refused {
        /// The gateway.
        gateway: String,
        /// Why.
        reason: String,
    },
    /// A birth message.
    Birth {
        /// The gateway.
        gateway: String,
        /// Its ledger's next seq.
        next: u64,
    },
    /// A Last Will.
    Death {
        /// The gateway.
        gateway: String,
        /// Its session number.
        bd: u64,
    },
    /// An attestation answer, stored for the verifier.
    Attest {
        /// The gateway.
        gateway: String,
        /// Its size.
        bytes: usize,
    },
}

/// A message the hub must publish: (topic, payload, retain).
pub type Outgoing = (String, Vec<u8>, bool);

/// What the hub holds for one gateway.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GatewayStatus {
    /// The gateway.
    pub gateway: String,
    /// Records stored.
    pub stored: usize,
    /// The last seq of the verified contiguous run (what receipts cover).
    pub covered_seq: Option<u64>,
    /// Its hash, hex.
    pub covered_hash: Option<String>,
    /// Why its ledger failed verification, if it did (no receipts since).
    pub failed: Option<String>,
}

/// The hub's fleet service: its store, inbox and signing keys.
#[derive(Debug)]
pub struct HubService {
    dir: PathBuf,
    inbox: Inbox,
    jobs_keys: Vec<SoftwareKey>,
    /// Per gateway: the last receipt sent (seq, time ms), to damp repeats on duplicates.
    receipts_sent: BTreeMap<GatewayId, (u64, u64)>,
    /// Per gateway: the last resend-from asked (seq, time ms), so a burst of records past one
    /// gap asks once, not once per record (each ask rewinds the gateway: that would amplify).
    resend_asked: BTreeMap<GatewayId, (u64, u64)>,
    /// Accept records signed in insecure development mode.
    allow_insecure: bool,
    /// Per gateway: the ledger verifier, fed the contiguous run in order.
    verifiers: BTreeMap<GatewayId, Verifier>,
    /// Per gateway: the verified prefix (seq, hash) — what receipts cover.
    verified: BTreeMap<GatewayId, (u64, [u8; 32])>,
    /// Gateways whose ledger failed verification: stored as evidence, never receipted again.
    failed: BTreeMap<GatewayId, String>,
}

/// A repeated receipt or resend-from for the same seq goes out at most this often, ms.
pub const REPEAT_INTERVAL_MS: u64 = 1000;

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl HubService {
    /// Opens the store under `dir` (creating it) and rebuilds the inbox from the records in it.
    /// `jobs_keys` must meet the `jobs` threshold of the trust root the gateways pin.
    ///
    /// Every gateway's contiguous run is checked with the ledger verifier (signatures, chain,
    /// counters, job stages; the event key is the one its first start record declares); a
    /// gateway whose ledger fails is never receipted again. `allow_insecure` accepts records of
    /// the insecure development mode (software keys).
    pub fn open(dir: &Path, jobs_keys: Vec<SoftwareKey>, allow_insecure: bool) -> Result<Self> {
        fs::create_dir_all(dir)?;
        let mut inbox = Inbox::new();
        for gw_dir in fs::read_dir(dir)? {
            let gw_dir = gw_dir?;
            let Some(name) = gw_dir.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let Ok(gw) = GatewayId::new(&name) else {
                continue;
            };
            let events = gw_dir.path().join("events");
            if !events.is_dir() {
                continue;
            }
            let mut files: Vec<PathBuf> = fs::read_dir(&events)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "cose"))
                .collect();
            files.sort();
            for f in files {
                let bytes = fs::read(&f)?;
                let header = wire::entry_header(&bytes, &gw)
                    .with_context(|| format!("stored record {}", f.display()))?;
                inbox
                    .restore(&gw, &header)
                    .with_context(|| format!("stored record {}", f.display()))?;
            }
        }
        let mut service = Self {
            dir: dir.to_path_buf(),
            inbox,
            jobs_keys,
            receipts_sent: BTreeMap::new(),
            resend_asked: BTreeMap::new(),
            allow_insecure,
            verifiers: BTreeMap::new(),
            verified: BTreeMap::new(),
            failed: BTreeMap::new(),
        };
        let gateways: Vec<(GatewayId, u64)> = service
            .inbox
            .gateways()
            .filter_map(|gw| service.inbox.covered(gw).map(|(seq, _)| (gw.clone(), seq)))
            .collect();
        for (gw, seq) in gateways {
            if let Err(reason) = service.verify_run(&gw, seq, None) {
                tracing::error!(gateway = %gw, %reason, "stored ledger does not verify");
            }
        }
        Ok(service)
    }

    /// What the hub holds for each gateway, from the inbox.
    pub fn status(&self) -> Vec<GatewayStatus> {
        let mut rows = Vec::new();
        let Ok(dirs) = fs::read_dir(&self.dir) else {
            return rows;
        };
        let mut ids: Vec<GatewayId> = dirs
            .filter_map(|d| {
                d.ok()?
                    .file_name()
                    .to_str()
                    .and_then(|n| GatewayId::new(n).ok())
            })
            .collect();
        ids.sort();
        for gw in ids {
            rows.push(GatewayStatus {
                stored: self.inbox.stored(&gw),
                covered_seq: self.verified.get(&gw).map(|(s, _)| *s),
                covered_hash: self.verified.get(&gw).map(|(_, h)| hex::encode(h)),
                failed: self.failed.get(&gw).cloned(),
                gateway: gw.to_string(),
            });
        }
        rows
    }

    /// The inbox (for reports and tests).
    pub fn inbox(&self) -> &Inbox {
        &self.inbox
    }

    /// The verified prefix of a gateway's ledger: what receipts cover.
    pub fn verified(&self, gw: &GatewayId) -> Option<(u64, [u8; 32])> {
        self.verified.get(gw).copied()
    }

    fn gateway_dir(&self, gw: &GatewayId) -> PathBuf {
        self.dir.join(gw.as_str())
    }

    fn receipt(&self, gw: &GatewayId, seq: u64, hash: [u8; 32]) -> Result<Vec<u8>> {
        let signers: Vec<&dyn Signer> = self.jobs_keys.iter().map(|k| k as &dyn Signer).collect();
        Ok(receipt::sign(
            &ReceiptPayload {
                v: FLEET_FORMAT_VERSION,
                gw: gw.clone(),
                seq,
                hash,
                time: now_ms(),
            },
            &signers,
        )?)
    }

    /// Handles one message from a gateway: returns what to publish (topic, payload, retain) and
    /// what happened.
    pub fn handle(
        &mut self,
        topic: &str,
        payload: &[u8],
    ) -> Result<(Vec<Outgoing>, Vec<HubEvent>)> {
        let mut out = Vec::new();
        let mut events = Vec::new();
        let Ok(Topic::Spoke(gw, kind)) = Topic::parse(topic) else {
            return Ok((out, events));
        };
        let name = gw.to_string();
        match kind {
            SpokeTopic::Evt => {
                let header = match wire::entry_header(payload, &gw) {
                    Ok(h) => h,
                    Err(e) => {
                        events.push(HubEvent::Refused {
                            gateway: name,
                            reason: e.to_string(),
                        });
                        return Ok((out, events));
                    }
                };
                self.event(&gw, payload, &header, &mut out, &mut events)?;
            }
            SpokeTopic::Birth => match Birth::decode(payload) {
                Ok(birth) => {
                    write_atomic(&self.gateway_dir(&gw).join("birth.cbor"), payload, false)
                        .or_else(|_| {
                            fs::create_dir_all(self.gateway_dir(&gw))?;
                            write_atomic(&self.gateway_dir(&gw).join("birth.cbor"), payload, false)
                        })?;
                    events.push(HubEvent::Birth {
                        gateway: name.clone(),
                        next: birth.head.next,
                    });
                    if let Some(from) = self.inbox.missing_from(&gw, birth.head.next) {
                        self.ask_resend(&gw, from, &mut out, &mut events)?;
                    }
                    if let Some((seq, hash)) = self.verified.get(&gw).copied() {
                        out.push(self.ack(&gw, seq, hash)?);
                        events.push(HubEvent::Receipted { gateway: name, seq });
                    }
                }
                Err(e) => events.push(HubEvent::Refused {
                    gateway: name,
                    reason: format!("birth: {e}"),
                }),
            },
            SpokeTopic::Death => {
                if let Ok(d) = Death::decode(payload) {
                    events.push(HubEvent::Death {
                        gateway: name,
                        bd: d.bd,
                    });
                }
            }
            SpokeTopic::Attest => {
                let dir = self.gateway_dir(&gw).join("attest");
                fs::create_dir_all(&dir)?;
                write_atomic(&dir.join(format!("{}.cbor", now_ms())), payload, false)?;
                events.push(HubEvent::Attest {
                    gateway: name,
                    bytes: payload.len(),
                });
            }
            SpokeTopic::Job | SpokeTopic::Cmd | SpokeTopic::Ack => {}
        }
        Ok((out, events))
    }

    /// A resend-from `from`, unless the same was asked less than [`REPEAT_INTERVAL_MS`] ago.
    fn ask_resend(
        &mut self,
        gw: &GatewayId,
        from: u64,
        out: &mut Vec<Outgoing>,
        events: &mut Vec<HubEvent>,
    ) -> Result<()> {
        let now = now_ms();
        if let Some((seq, at)) = self.resend_asked.get(gw)
            && *seq == from
            && now.saturating_sub(*at) < REPEAT_INTERVAL_MS
        {
            return Ok(());
        }
        self.resend_asked.insert(gw.clone(), (from, now));
        out.push(command(gw, Command::ResendFrom(from))?);
        events.push(HubEvent::ResendAsked {
            gateway: gw.to_string(),
            from,
        });
        Ok(())
    }

    /// The current receipt again, unless the same was sent less than [`REPEAT_INTERVAL_MS`] ago.
    /// Feeds the verifier every stored record from its next index up to `upto`; `fresh` is the
    /// record just received (not re-read from disk). On success the verified prefix advances.
    fn verify_run(
        &mut self,
        gw: &GatewayId,
        upto: u64,
        fresh: Option<(u64, &[u8])>,
    ) -> Result<(), String> {
        if let Some(reason) = self.failed.get(gw) {
            return Err(format!("ledger failed verification earlier: {reason}"));
        }
        let allow_insecure = self.allow_insecure;
        let verifier = self.verifiers.entry(gw.clone()).or_insert_with(|| {
            Verifier::new(LedgerTrust {
                gateway_id: Some(gw.to_string()),
                allow_insecure,
                ..LedgerTrust::default()
            })
        });
        let events = self.dir.join(gw.as_str()).join("events");
        let mut last = None;
        for seq in verifier.next_index()..=upto {
            let bytes = match fresh {
                Some((s, b)) if s == seq => b.to_vec(),
                _ => fs::read(events.join(format!("{seq:020}.cose")))
                    .map_err(|e| format!("stored record {seq}: {e}"))?,
            };
            if let Err(e) = verifier.push(&bytes) {
                let reason = e.to_string();
                self.failed.insert(gw.clone(), reason.clone());
                return Err(reason);
            }
            last = Some((seq, <[u8; 32]>::from(Sha256::digest(&bytes))));
        }
        if let Some(head) = last {
            self.verified.insert(gw.clone(), head);
        }
        Ok(())
    }

    fn repeat_ack(&mut self, gw: &GatewayId, out: &mut Vec<Outgoing>) -> Result<()> {
        let Some((seq, hash)) = self.verified.get(gw).copied() else {
            return Ok(());
        };
        if let Some((sent, at)) = self.receipts_sent.get(gw)
            && *sent == seq
            && now_ms().saturating_sub(*at) < REPEAT_INTERVAL_MS
        {
            return Ok(());
        }
        out.push(self.ack(gw, seq, hash)?);
        Ok(())
    }

    fn ack(&mut self, gw: &GatewayId, seq: u64, hash: [u8; 32]) -> Result<Outgoing> {
        self.receipts_sent.insert(gw.clone(), (seq, now_ms()));
        Ok((
            Topic::Spoke(gw.clone(), SpokeTopic::Ack).name(),
            self.receipt(gw, seq, hash)?,
            true,
        ))
    }

    fn event(
        &mut self,
        gw: &GatewayId,
        payload: &[u8],
        header: &EntryHeader,
        out: &mut Vec<Outgoing>,
        events: &mut Vec<HubEvent>,
    ) -> Result<()> {
        let name = gw.to_string();
        match self.inbox.receive(gw, header) {
            Ok(Received::Duplicate) => {
                events.push(HubEvent::Duplicate {
                    gateway: name,
                    seq: header.seq,
                });
                // The gateway evidently lacks the receipt: send the current one again, at most
                // once per REPEAT_INTERVAL_MS (a re-sent burst must not become a receipt burst).
                self.repeat_ack(gw, out)?;
            }
            Ok(Received::New { covered, gap_from }) => {
                let dir = self.gateway_dir(gw).join("events");
                fs::create_dir_all(&dir)?;
                // Durable before any receipt covers it.
                write_atomic(
                    &dir.join(format!("{:020}.cose", header.seq)),
                    payload,
                    false,
                )?;
                events.push(HubEvent::Stored {
                    gateway: name.clone(),
                    seq: header.seq,
                });
                if let Some((seq, hash)) = covered {
                    // Receipted only once the whole run up to it verifies as a ledger.
                    match self.verify_run(gw, seq, Some((header.seq, payload))) {
                        Ok(()) => {
                            out.push(self.ack(gw, seq, hash)?);
                            events.push(HubEvent::Receipted {
                                gateway: name.clone(),
                                seq,
                            });
                        }
                        Err(reason) => {
                            tracing::error!(gateway = %gw, %reason, "ledger does not verify");
                            events.push(HubEvent::Refused {
                                gateway: name.clone(),
                                reason: format!("ledger verification: {reason}"),
                            });
                        }
                    }
                }
                if let Some(from) = gap_from {
                    self.ask_resend(gw, from, out, events)?;
                }
            }
            Err(e) => {
                if let InboxError::Tampering { seq, received, .. } = &e {
                    let dir = self.gateway_dir(gw).join("tampering");
                    fs::create_dir_all(&dir)?;
                    write_atomic(&dir.join(format!("{seq}-{received}.cose")), payload, false)?;
                }
                tracing::error!(gateway = %gw, error = %e, "record refused");
                events.push(HubEvent::Refused {
                    gateway: name,
                    reason: e.to_string(),
                });
            }
        }
        Ok(())
    }
}

/// A command message for `gw`: (topic, payload, retain).
pub fn command(gw: &GatewayId, op: Command) -> Result<Outgoing> {
    Ok((
        Topic::Spoke(gw.clone(), SpokeTopic::Cmd).name(),
        HubCommand::new(op).to_cbor()?,
        false,
    ))
}

/// Runs the hub's fleet service on the broker until `stop` resolves, reporting on `report`.
pub async fn serve(
    mut service: HubService,
    options: MqttOptions,
    report: mpsc::UnboundedSender<HubEvent>,
    stop: impl Future<Output = ()>,
) -> Result<HubService> {
    let (client, mut eventloop) = AsyncClient::new(options, 4096);
    // Unbounded on purpose: the poller must never wait on the handler, or a handler waiting for
    // room in the client's request queue (drained only by the poller) would deadlock both. The
    // broker's flow control bounds what arrives.
    let (tx, mut rx) = mpsc::unbounded_channel::<Option<(String, Vec<u8>)>>();
    let poller = tokio::spawn(async move {
        loop {
            let item = match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => Some(None),
                Ok(Event::Incoming(Packet::Publish(p))) => Some(Some((
                    String::from_utf8_lossy(&p.topic).into_owned(),
                    p.payload.to_vec(),
                ))),
                Ok(_) => None,
                Err(e) => {
                    tracing::debug!(error = %e, "hub link connection lost");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                    None
                }
            };
            if let Some(item) = item
                && tx.send(item).is_err()
            {
                break;
            }
        }
    });
    tokio::pin!(stop);
    let result: Result<()> = loop {
        tokio::select! {
            () = &mut stop => break Ok(()),
            item = rx.recv() => match item {
                None => break Ok(()),
                // (Re)connected: the session may be gone, so subscribe again.
                Some(None) => {
                    for filter in Topic::hub_subscriptions() {
                        client.subscribe(filter, QoS::AtLeastOnce).await?;
                    }
                }
                Some(Some((topic, payload))) => {
                    if payload.len() > MAX_EVENT_MESSAGE_BYTES {
                        let _ = report.send(HubEvent::Refused {
                            gateway: topic.clone(),
                            reason: format!("message of {} bytes", payload.len()),
                        });
                        continue;
                    }
                    let (out, events) = service.handle(&topic, &payload)?;
                    for (t, p, retain) in out {
                        client.publish(t, QoS::AtLeastOnce, retain, p).await?;
                    }
                    for e in events {
                        let _ = report.send(e);
                    }
                }
            },
        }
    };
    poller.abort();
    let _ = client.disconnect().await;
    result.map(|()| service)
}

/// Publishes one message (a signed job, a command) and waits for the broker's PUBACK.
pub async fn publish_once(
    options: MqttOptions,
    topic: String,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<()> {
    publish(options, topic, payload, false, timeout).await
}

async fn publish(
    options: MqttOptions,
    topic: String,
    payload: Vec<u8>,
    retain: bool,
    timeout: Duration,
) -> Result<()> {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await?;
    let wait = async {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::PubAck(ack))) => {
                    use rumqttc::v5::mqttbytes::v5::PubAckReason;
                    return if matches!(
                        ack.reason,
                        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
                    ) {
                        Ok(())
                    } else {
                        bail!("broker refused the message: {:?}", ack.reason)
                    };
                }
                Ok(_) => {}
                Err(e) => bail!("broker connection: {e}"),
            }
        }
    };
    let r = tokio::time::timeout(timeout, wait)
        .await
        .context("no PUBACK from the broker in time")?;
    let _ = client.disconnect().await;
    r
}

/// Challenges a gateway: subscribes to its `up/attest`, sends a fresh `nonce` on `down/cmd`, and
/// waits up to `timeout` for the answer to *that* nonce (answers to other nonces are stale and
/// skipped). The answer is verified with the gateway's enrolled AK (`ak`) and, when given, the
/// golden measurements. The outer error is "no verdict" (broker, timeout); the inner one a
/// refused answer.
pub async fn attest(
    options: MqttOptions,
    gw: &GatewayId,
    ak: &PublicKey,
    nonce: [u8; 32],
    golden: Option<&GoldenValues>,
    timeout: Duration,
) -> Result<Result<AttestedGateway, AttestAnswerError>> {
    let (client, mut eventloop) = AsyncClient::new(options, 16);
    let answers = Topic::Spoke(gw.clone(), SpokeTopic::Attest).name();
    client.subscribe(answers.clone(), QoS::AtLeastOnce).await?;
    let wait = async {
        let mut asked = false;
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::SubAck(_))) if !asked => {
                    // Subscribed first, so the answer cannot slip past us.
                    let (topic, payload, _) = command(gw, Command::Attest(nonce))?;
                    client
                        .publish(topic, QoS::AtLeastOnce, false, payload)
                        .await?;
                    asked = true;
                }
                Ok(Event::Incoming(Packet::Publish(p))) if p.topic == answers.as_bytes() => {
                    let stale = AttestAnswer::decode(&p.payload).is_ok_and(|a| a.nonce != nonce);
                    if stale {
                        tracing::debug!(gateway = %gw, "answer to an earlier nonce skipped");
                        continue;
                    }
                    return Ok(verify_answer(&p.payload, gw, ak, &nonce, golden));
                }
                Ok(_) => {}
                Err(e) => bail!("broker connection: {e}"),
            }
        }
    };
    let verdict = tokio::time::timeout(timeout, wait)
        .await
        .with_context(|| format!("no attestation answer from {gw} within {timeout:?}"))?;
    let _ = client.disconnect().await;
    verdict
}

/// Signs a policy bundle for `fleet/down/policies/{id}` with the `policies` keys: the TOML must
/// parse as a policy (its own id and version are the bundle's). Returns (topic, message).
pub fn sign_policy_bundle(toml: &str, keys: &[SoftwareKey]) -> Result<(String, Vec<u8>)> {
    let policy = dosegate_core::policy::Policy::from_toml(toml)?;
    let bundle = PolicyBundle {
        v: FLEET_FORMAT_VERSION,
        id: policy.id().to_owned(),
        toml: toml.as_bytes().to_vec(),
        sha256: Sha256::digest(toml.as_bytes()).into(),
        version: policy.version(),
    };
    let topic = FleetTopic::Policies
        .item(&bundle.id)
        .with_context(|| format!("policy id {:?} cannot name a topic", bundle.id))?;
    Ok((
        topic,
        sign_metadata(ContentType::Policy, &cbor::to_vec(&bundle)?, keys)?,
    ))
}

/// Signs a model bundle for `fleet/down/models/{id}` with the `models` keys: the model file must
/// validate (its own id and version are the bundle's). Returns (topic, message).
pub fn sign_model_bundle(model: &[u8], keys: &[SoftwareKey]) -> Result<(String, Vec<u8>)> {
    let validated = dosegate_core::inference::ValidatedModel::from_bytes(model)?;
    let bundle = ModelBundle {
        v: FLEET_FORMAT_VERSION,
        id: validated.id().id.clone(),
        model: model.to_vec(),
        sha256: Sha256::digest(model).into(),
        version: validated.id().version,
    };
    let topic = FleetTopic::Models
        .item(&bundle.id)
        .with_context(|| format!("model id {:?} cannot name a topic", bundle.id))?;
    let bytes = sign_metadata(ContentType::Model, &cbor::to_vec(&bundle)?, keys)?;
    if bytes.len() > MAX_MODEL_BUNDLE_BYTES {
        bail!(
            "model bundle of {} bytes exceeds the fleet link's cap of {MAX_MODEL_BUNDLE_BYTES}",
            bytes.len()
        );
    }
    Ok((topic, bytes))
}

/// Signs a revocation list for `fleet/down/revocation` with the `revocation` keys.
pub fn sign_revocation(list: &RevocationList, keys: &[SoftwareKey]) -> Result<Vec<u8>> {
    sign_metadata(ContentType::Revocation, &cbor::to_vec(list)?, keys)
}

fn sign_metadata(kind: ContentType, payload: &[u8], keys: &[SoftwareKey]) -> Result<Vec<u8>> {
    let signers: Vec<&dyn Signer> = keys.iter().map(|k| k as &dyn Signer).collect();
    Ok(envelope::sign(kind, payload, &signers)?)
}

/// The root chain for `fleet/down/root`: the archived roots under `HUB/roots/` and the current
/// `trust-root.cbor`, the last [`MAX_ROOT_CHAIN`] of them, oldest first.
pub fn root_chain(hub: &Path) -> Result<Vec<u8>> {
    let mut roots = Vec::new();
    let archive = hub.join("roots");
    if archive.is_dir() {
        let mut files: Vec<PathBuf> = fs::read_dir(&archive)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "cbor"))
            .collect();
        files.sort();
        for f in files {
            roots.push(fs::read(&f).with_context(|| format!("{}", f.display()))?);
        }
    }
    roots.push(fs::read(hub.join("trust-root.cbor")).context("trust-root.cbor")?);
    let skip = roots.len().saturating_sub(MAX_ROOT_CHAIN);
    Ok(encode_root_chain(&roots[skip..])?)
}

/// Rotates the hub's trust root to the next version with the same keys and roles and a new
/// expiry (`now + lifetime_s`), signed by the `root` threshold (which, the keys being the same,
/// is both the old and the new root's). The old root is archived under `HUB/roots/<v>.cbor` so
/// [`root_chain`] can still walk a gateway through it. Returns the new version.
pub fn rotate_root(hub: &HubHome, lifetime_s: u64, now: u64) -> Result<u64> {
    let current = hub.trusted_root(now)?;
    let mut next = current.metadata().clone();
    next.version = next
        .version
        .checked_add(1)
        .context("root version overflow")?;
    next.expires = now.saturating_add(lifetime_s);
    let keys = hub.role_keys(Role::Root, &current)?;
    let bytes = sign_metadata(ContentType::TrustRoot, &next.to_cbor()?, &keys)?;
    current
        .rotate(&bytes, now)
        .context("the rotated root would not be accepted by a gateway")?;
    let archive = hub.dir().join("roots");
    fs::create_dir_all(&archive)?;
    write_atomic(
        &archive.join(format!("{:020}.cbor", current.metadata().version)),
        current.envelope_bytes(),
        false,
    )?;
    write_atomic(&hub.dir().join("trust-root.cbor"), &bytes, false)?;
    write_atomic(
        &hub.dir().join("trust-root.json"),
        serde_json::to_string_pretty(&crate::hub::root_view(&next))?.as_bytes(),
        false,
    )?;
    Ok(next.version)
}

/// Publishes one **retained** message (fleet metadata) and waits for the broker's PUBACK.
pub async fn publish_retained(
    options: MqttOptions,
    topic: String,
    payload: Vec<u8>,
    timeout: Duration,
) -> Result<()> {
    publish(options, topic, payload, true, timeout).await
}

/// The hub client's MQTT client id.
pub fn hub_client_id() -> &'static str {
    HUB_CLIENT_CN
}

#[cfg(test)]
mod tests;

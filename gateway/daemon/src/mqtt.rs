//! The fleet link adapter: MQTT v5 over TLS 1.3 with a client certificate, between the gateway's
//! [`Outbox`] and the hub. The only module of the daemon that imports `rumqttc`.
//!
//! What it sets up ([`tls_config`], [`mqtt_options`]):
//! - TLS 1.3 only (rustls with the ring provider; no TLS 1.2 code path), the fleet CA as the only
//!   root, session resumption **off** (every connection proves possession of the client key);
//! - the client key is a [`dosegate_core::envelope::Signer`] behind a rustls `SigningKey`
//!   ([`SignerKey`]): a TPM-held key (the daemon's `tpm` adapter) or, only in the insecure
//!   development mode, a PKCS#8 file key ([`file_signer`]);
//! - MQTT v5, client id = gateway id (= certificate CN), clean start **false** with a session
//!   expiry, QoS 1, packets up to [`MAX_JOB_MESSAGE_BYTES`] plus headroom, TCP_NODELAY, a Last
//!   Will on `up/death`, a retained birth on `up/birth` after each CONNACK, subscriptions to
//!   `spoke/{gw}/down/#` and `fleet/down/#` renewed after each CONNACK.
//!
//! What it runs ([`run`]): ledger entries come in on a channel and go into the core's [`Outbox`];
//! whatever the outbox says to publish goes out on `up/evt`; receipts on `down/ack` are verified
//! against the trust root and revocation list in force (a watch the lifecycle updates) and fed
//! back; `resend-from` and `rebirth` are handled here; jobs, attestation nonces, aborts and fleet
//! metadata are passed on as [`Inbound`] to the job lifecycle;
//! what the lifecycle has to say back (attestation answers) comes in as [`Outbound`] and is
//! published on the matching `up/` topic.
//! The delivery decisions all live in `dosegate_core::fleet`; this loop only moves bytes.

use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::fleet_state::TrustInForce;
use dosegate_core::envelope::{self, Signer};
use dosegate_core::fleet::{
    Birth, Command, Death, FLEET_FORMAT_VERSION, FleetTopic, GatewayId, HubCommand, LedgerHead,
    MAX_JOB_MESSAGE_BYTES, Measurement, Outbox, SoftwareVersion, SpokeTopic, Topic, receipt,
};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{LastWill, Packet};
use rumqttc::v5::{AsyncClient, Event, MqttOptions};
use rumqttc::{NetworkOptions, TlsConfiguration, Transport};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, SignatureAlgorithm, SignatureScheme};
use tokio::sync::{mpsc, watch};

/// Why the fleet link could not be set up or stopped.
#[derive(Debug, thiserror::Error)]
pub enum MqttError {
    /// A PEM file holds no certificate or no usable key.
    #[error("{what}: no usable PEM item")]
    Pem {
        /// Which input.
        what: &'static str,
    },
    /// The CA certificate was refused by rustls.
    #[error("fleet CA certificate: {0}")]
    Ca(#[source] rustls::Error),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The broker host is not a valid TLS server name.
    #[error("broker host {host:?} is not a valid server name")]
    ServerName {
        /// The host.
        host: String,
    },
    /// A fleet message could not be encoded.
    #[error("encoding {what}: {reason}")]
    Encode {
        /// Which message.
        what: &'static str,
        /// Why.
        reason: String,
    },
    /// The MQTT client's request queue is gone (the event loop stopped).
    #[error("MQTT client: {0}")]
    Client(#[source] Box<rumqttc::v5::ClientError>),
}

impl From<rumqttc::v5::ClientError> for MqttError {
    fn from(e: rumqttc::v5::ClientError) -> Self {
        Self::Client(Box::new(e))
    }
}

/// A [`Signer`] (TPM or file key) as the rustls key of the TLS client certificate.
#[derive(Clone)]
pub struct SignerKey(Arc<dyn Signer + Send + Sync>);

impl std::fmt::Debug for SignerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignerKey({:?})", self.0.public_key().key_id())
    }
}

impl SignerKey {
    /// Wraps a signer.
    pub fn new(signer: Arc<dyn Signer + Send + Sync>) -> Self {
        Self(signer)
    }
}

impl rustls::sign::SigningKey for SignerKey {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn rustls::sign::Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(self.clone()) as Box<dyn rustls::sign::Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl rustls::sign::Signer for SignerKey {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        let rs = self
            .0
            .sign(message)
            .map_err(|e| rustls::Error::General(format!("client key: {e}")))?;
        let sig = p256::ecdsa::Signature::from_slice(&rs)
            .map_err(|_| rustls::Error::General("client key returned a bad signature".into()))?;
        Ok(sig.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

#[derive(Debug)]
struct ClientCert(Arc<CertifiedKey>);

impl ResolvesClientCert for ClientCert {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        schemes
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Arc::clone(&self.0))
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Loads a PKCS#8 PEM P-256 key as a software signer. Insecure development mode only: in
/// production the client key is generated in and never leaves the TPM.
pub fn file_signer(pem: &[u8]) -> Result<Arc<dyn Signer + Send + Sync>, MqttError> {
    use p256::pkcs8::DecodePrivateKey as _;
    let text = std::str::from_utf8(pem).map_err(|_| MqttError::Pem { what: "client key" })?;
    let key = p256::ecdsa::SigningKey::from_pkcs8_pem(text)
        .map_err(|_| MqttError::Pem { what: "client key" })?;
    Ok(Arc::new(envelope::SoftwareKey::from_signing_key(key)))
}

/// The TLS client configuration: TLS 1.3 only, the fleet CA as the only root, the client
/// certificate chain `cert_pem` whose key is `key`, no session resumption.
pub fn tls_config(
    ca_pem: &[u8],
    cert_pem: &[u8],
    key: Arc<dyn Signer + Send + Sync>,
) -> Result<ClientConfig, MqttError> {
    let mut roots = rustls::RootCertStore::empty();
    let mut any_ca = false;
    for ca in CertificateDer::pem_slice_iter(ca_pem) {
        let ca = ca.map_err(|_| MqttError::Pem { what: "fleet CA" })?;
        roots.add(ca).map_err(MqttError::Ca)?;
        any_ca = true;
    }
    if !any_ca {
        return Err(MqttError::Pem { what: "fleet CA" });
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert_pem)
        .collect::<Result<_, _>>()
        .map_err(|_| MqttError::Pem {
            what: "client certificate",
        })?;
    if chain.is_empty() {
        return Err(MqttError::Pem {
            what: "client certificate",
        });
    }
    let certified = CertifiedKey::new(chain, Arc::new(SignerKey::new(key)));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(ClientCert(Arc::new(certified))));
    config.resumption = rustls::client::Resumption::disabled();
    Ok(config)
}

/// Where the broker is and how this gateway presents itself.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    /// This gateway (its certificate's CN).
    pub gateway: GatewayId,
    /// Broker host name (must match its certificate).
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// MQTT keep-alive.
    pub keep_alive: Duration,
    /// How long the broker keeps the session after a disconnect, seconds.
    pub session_expiry_s: u32,
    /// Software versions announced in the birth message.
    pub versions: Vec<SoftwareVersion>,
    /// Measurements announced in the birth message.
    pub measurements: Vec<Measurement>,
    /// Insecure development mode (file key), announced in the birth message.
    pub insecure: bool,
}

/// The MQTT options of one session `bd` (its number goes into the Last Will).
pub fn mqtt_options(
    config: &LinkConfig,
    tls: Arc<ClientConfig>,
    bd: u64,
) -> Result<MqttOptions, MqttError> {
    if ServerName::try_from(config.host.clone()).is_err() {
        return Err(MqttError::ServerName {
            host: config.host.clone(),
        });
    }
    let mut options = MqttOptions::new(config.gateway.as_str(), &config.host, config.port);
    options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(tls)));
    options.set_keep_alive(config.keep_alive);
    options.set_clean_start(false);
    options.set_session_expiry_interval(Some(config.session_expiry_s));
    let max = u32::try_from(MAX_JOB_MESSAGE_BYTES + 64 * 1024).unwrap_or(u32::MAX);
    options.set_max_packet_size(Some(max));
    options.set_outgoing_inflight_upper_limit(100);
    options.set_connection_timeout(10);
    let mut network = NetworkOptions::new();
    network.set_tcp_nodelay(true);
    options.set_network_options(network);
    let death = Death {
        v: FLEET_FORMAT_VERSION,
        bd,
        gw: config.gateway.clone(),
    }
    .to_cbor()
    .map_err(|e| MqttError::Encode {
        what: "Last Will",
        reason: e.to_string(),
    })?;
    options.set_last_will(LastWill::new(
        Topic::Spoke(config.gateway.clone(), SpokeTopic::Death).name(),
        death,
        QoS::AtLeastOnce,
        false,
        None,
    ));
    Ok(options)
}

/// A ledger entry the store has made durable, handed to the fleet link.
#[derive(Debug, Clone)]
pub struct LedgerEntry {
    /// Its seq.
    pub seq: u64,
    /// SHA-256 of its record bytes.
    pub hash: [u8; 32],
    /// The sealed record.
    pub bytes: Vec<u8>,
    /// When it was recorded, Unix ms.
    pub recorded_ms: u64,
}

/// What the hub sent that the job lifecycle must act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Inbound {
    /// A signed job (still to be verified).
    Job(Vec<u8>),
    /// Answer with a TPM quote over this nonce on `up/attest`.
    Attest([u8; 32]),
    /// Abort this job.
    Abort(String),
    /// Signed fleet metadata (still to be verified).
    Metadata(FleetTopic, Vec<u8>),
}

/// What the job lifecycle publishes through the running link (QoS 1, not retained).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outbound {
    /// An attestation answer (`crate::attest::answer_challenge`) on `up/attest`.
    Attest(Vec<u8>),
}

impl Outbound {
    fn into_topic_payload(self, gw: &GatewayId) -> (String, Vec<u8>) {
        match self {
            Self::Attest(p) => (Topic::Spoke(gw.clone(), SpokeTopic::Attest).name(), p),
        }
    }
}

/// What the link reports about itself.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LinkStatus {
    /// Connected (CONNACK received, not since lost).
    pub connected: bool,
    /// Both subscriptions of this connection are acknowledged (SUBACK): messages from the hub
    /// reach the gateway from here on.
    pub subscribed: bool,
    /// Connections made so far.
    pub connections: u64,
    /// Unreceipted entries.
    pub backlog: usize,
    /// The last receipt accepted: (seq, hash).
    pub receipted: Option<(u64, [u8; 32])>,
    /// Entries published (including re-sends).
    pub published: u64,
    /// Receipts or commands refused (bad signature, wrong hash…).
    pub refused: u64,
    /// The bytes of the last receipt accepted (to keep beside the ledger across restarts).
    pub receipt: Option<Vec<u8>>,
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

enum FromBroker {
    Connected,
    Subscribed,
    Disconnected,
    Message(String, Vec<u8>),
}

/// Runs the fleet link until `stop` resolves: connects (and reconnects) to the broker, publishes
/// the outbox, applies receipts and commands, passes jobs and metadata on to `inbound`, and
/// publishes what the lifecycle sends on `outbound`. An outbound message sent while the broker is
/// unreachable is queued in the MQTT client and goes out after the reconnection (not kept across
/// restarts: the hub asks again with a fresh nonce).
#[allow(clippy::too_many_lines, clippy::too_many_arguments)]
pub async fn run(
    config: LinkConfig,
    tls: Arc<ClientConfig>,
    trust: watch::Receiver<TrustInForce>,
    mut outbox: Outbox,
    mut ledger: mpsc::Receiver<LedgerEntry>,
    inbound: mpsc::Sender<Inbound>,
    mut outbound: mpsc::Receiver<Outbound>,
    status: watch::Sender<LinkStatus>,
    stop: impl Future<Output = ()>,
) -> Result<Outbox, MqttError> {
    let bd = now_ms();
    let options = mqtt_options(&config, tls, bd)?;
    let (client, mut eventloop) = AsyncClient::new(options, 1024);

    // Unbounded on purpose: the poller must never wait on the link loop, or a loop waiting for
    // room in the client's request queue (drained only by the poller) would deadlock both. The
    // broker's flow control bounds what arrives.
    let (to_link, mut from_broker) = mpsc::unbounded_channel::<FromBroker>();
    let poller = tokio::spawn(async move {
        loop {
            match eventloop.poll().await {
                Ok(Event::Incoming(Packet::ConnAck(_))) => {
                    if to_link.send(FromBroker::Connected).is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::SubAck(_))) => {
                    if to_link.send(FromBroker::Subscribed).is_err() {
                        break;
                    }
                }
                Ok(Event::Incoming(Packet::Publish(p))) => {
                    let topic = String::from_utf8_lossy(&p.topic).into_owned();
                    if to_link
                        .send(FromBroker::Message(topic, p.payload.to_vec()))
                        .is_err()
                    {
                        break;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "fleet link connection lost");
                    if to_link.send(FromBroker::Disconnected).is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }
        }
    });

    let evt_topic = Topic::Spoke(config.gateway.clone(), SpokeTopic::Evt).name();
    let mut head = LedgerHead {
        hash: [0; 32],
        next: outbox.next_seq(),
    };
    let mut st = LinkStatus::default();
    let mut connected = false;
    let mut subacks = 0u32;
    let mut ledger_open = true;
    let mut outbound_open = true;
    tokio::pin!(stop);
    let result = loop {
        // Publish whatever the outbox has, while connected.
        let mut failed = None;
        while let Some(out) = connected.then(|| outbox.poll_publish(now_ms())).flatten() {
            if let Err(e) = client
                .publish(evt_topic.clone(), QoS::AtLeastOnce, false, out.bytes)
                .await
            {
                failed = Some(e);
                break;
            }
            st.published += 1;
        }
        if let Some(e) = failed {
            break Err(e.into());
        }
        st.backlog = outbox.backlog();
        st.receipted = outbox.receipted();
        st.connected = connected;
        status.send_replace(st.clone());
        let tick = outbox
            .next_tick_ms()
            .map_or(Duration::from_secs(3600), |t| {
                Duration::from_millis(t.saturating_sub(now_ms()))
            });
        tokio::select! {
            () = &mut stop => break Ok(()),
            entry = ledger.recv(), if ledger_open => match entry {
                Some(e) => {
                    head = LedgerHead { hash: e.hash, next: e.seq.saturating_add(1) };
                    if let Err(err) = outbox.push(e.seq, e.hash, e.bytes, e.recorded_ms) {
                        tracing::error!(error = %err, "ledger entry refused by the outbox");
                    }
                }
                None => ledger_open = false,
            },
            out = outbound.recv(), if outbound_open => match out {
                Some(out) => {
                    let (topic, payload) = out.into_topic_payload(&config.gateway);
                    client.publish(topic, QoS::AtLeastOnce, false, payload).await?;
                }
                None => outbound_open = false,
            },
            () = tokio::time::sleep(tick) => {
                if outbox.tick(now_ms()) {
                    tracing::info!("unreceipted entries sent again after the resend interval");
                }
            }
            msg = from_broker.recv() => match msg {
                None => break Ok(()),
                Some(FromBroker::Disconnected) => {
                    connected = false;
                    subacks = 0;
                    st.subscribed = false;
                }
                Some(FromBroker::Subscribed) => {
                    subacks += 1;
                    st.subscribed = subacks >= 2;
                }
                Some(FromBroker::Connected) => {
                    connected = true;
                    subacks = 0;
                    st.subscribed = false;
                    st.connections += 1;
                    tracing::info!(gateway = %config.gateway, "fleet link connected");
                    outbox.on_connected();
                    let [own, fleet] = Topic::gateway_subscriptions(&config.gateway);
                    client.subscribe(own, QoS::AtLeastOnce).await?;
                    client.subscribe(fleet, QoS::AtLeastOnce).await?;
                    publish_birth(&client, &config, bd, head).await?;
                }
                Some(FromBroker::Message(topic, payload)) => {
                    let rebirth = handle_message(
                        &config.gateway, &trust, &mut outbox, &inbound, &mut st, &topic, payload,
                    )
                    .await;
                    if rebirth {
                        publish_birth(&client, &config, bd, head).await?;
                    }
                }
            },
        }
    };
    poller.abort();
    let _ = client.disconnect().await;
    result.map(|()| outbox)
}

async fn publish_birth(
    client: &AsyncClient,
    config: &LinkConfig,
    bd: u64,
    head: LedgerHead,
) -> Result<(), MqttError> {
    let birth = Birth {
        v: FLEET_FORMAT_VERSION,
        bd,
        gw: config.gateway.clone(),
        head,
        time: now_ms(),
        insecure: config.insecure,
        versions: config.versions.clone(),
        measurements: config.measurements.clone(),
    }
    .to_cbor()
    .map_err(|e| MqttError::Encode {
        what: "birth",
        reason: e.to_string(),
    })?;
    let topic = Topic::Spoke(config.gateway.clone(), SpokeTopic::Birth).name();
    client.publish(topic, QoS::AtLeastOnce, true, birth).await?;
    Ok(())
}

/// Applies one message from the broker; returns true when the hub asked for a rebirth.
async fn handle_message(
    gateway: &GatewayId,
    trust: &watch::Receiver<TrustInForce>,
    outbox: &mut Outbox,
    inbound: &mpsc::Sender<Inbound>,
    st: &mut LinkStatus,
    topic: &str,
    payload: Vec<u8>,
) -> bool {
    let mut rebirth = false;
    let forward = match Topic::parse(topic) {
        Ok(Topic::Spoke(gw, SpokeTopic::Ack)) if gw == *gateway => {
            // Against the keys in force now (a rotated or revoked `jobs` key included); the
            // borrow ends before anything is awaited.
            let verified = receipt::verify_in_force(&payload, trust.borrow().keys(), gateway);
            match verified
                .map_err(|e| e.to_string())
                .and_then(|r| outbox.on_receipt(&r).map_err(|e| e.to_string()))
            {
                Ok(n) => {
                    tracing::debug!(covered = n, "receipt accepted");
                    if n > 0 {
                        st.receipt = Some(payload);
                    }
                }
                Err(e) => {
                    st.refused += 1;
                    tracing::warn!(error = %e, "receipt refused");
                }
            }
            None
        }
        Ok(Topic::Spoke(gw, SpokeTopic::Cmd)) if gw == *gateway => {
            match HubCommand::decode(&payload) {
                Ok(cmd) => match cmd.op {
                    Command::ResendFrom(seq) => {
                        if let Err(e) = outbox.resend_from(seq) {
                            tracing::warn!(error = %e, "resend-from refused");
                        }
                        None
                    }
                    Command::Rebirth => {
                        rebirth = true;
                        None
                    }
                    Command::Attest(nonce) => Some(Inbound::Attest(nonce)),
                    Command::Abort(job) => Some(Inbound::Abort(job)),
                },
                Err(e) => {
                    st.refused += 1;
                    tracing::warn!(error = %e, "hub command refused");
                    None
                }
            }
        }
        Ok(Topic::Spoke(gw, SpokeTopic::Job)) if gw == *gateway => Some(Inbound::Job(payload)),
        Ok(Topic::Fleet(t)) => Some(Inbound::Metadata(t, payload)),
        Ok(other) => {
            tracing::warn!(topic = %other.name(), "message on a topic this gateway does not read");
            None
        }
        Err(e) => {
            tracing::warn!(error = %e, "message on an unknown topic");
            None
        }
    };
    if let Some(msg) = forward
        && inbound.send(msg).await.is_err()
    {
        tracing::warn!("job lifecycle is gone; inbound message dropped");
    }
    rebirth
}

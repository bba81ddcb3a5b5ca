//! The fleet link against a real mosquitto (Debian `mosquitto`), started by each test on a free
//! loopback port with the PKI, configuration and ACL that `dosegate-hub` generates.
//!
//! Behind the `real-mosquitto` feature. With `DOSEGATE_REQUIRE_REAL=1` a missing broker fails the
//! test; without it the test prints a skip notice and returns.
#![cfg(feature = "real-mosquitto")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use dosegate::fleet_state::TrustInForce;
use dosegate::mqtt::{self, Inbound, LedgerEntry, LinkConfig, LinkStatus, Outbound};
use dosegate_core::cbor;
use dosegate_core::envelope::SoftwareKey;
use dosegate_core::fleet::{Command as HubOp, GatewayId, Outbox, OutboxConfig};
use dosegate_core::trust::{Role, TrustedRoot};
use dosegate_provisioning::broker::{self, BrokerOptions};
use dosegate_provisioning::fleet::{self, HubEvent, HubService};
use dosegate_provisioning::hub::{HubHome, InitOptions, RoleShape};
use dosegate_provisioning::pki::{HUB_CLIENT_CN, HUB_PUBLISHER_CN, Pki};
use rumqttc::v5::mqttbytes::QoS;
use rumqttc::v5::mqttbytes::v5::{Packet, PubAckReason};
use rumqttc::v5::{AsyncClient, Event};
use sha2::{Digest as _, Sha256};
use tokio::sync::{mpsc, oneshot, watch};

#[cfg(feature = "real-swtpm")]
#[path = "support/ports.rs"]
mod ports;
#[path = "support/swtpm.rs"]
mod swtpm;

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn mosquitto_binary() -> Option<PathBuf> {
    ["/usr/sbin/mosquitto", "/usr/bin/mosquitto"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The broker binary, or `None` after printing a skip notice (a failure under
/// `DOSEGATE_REQUIRE_REAL`).
fn require_mosquitto(test: &str) -> Option<PathBuf> {
    let found = mosquitto_binary();
    if found.is_none() {
        assert!(
            std::env::var_os("DOSEGATE_REQUIRE_REAL").is_none(),
            "{test}: mosquitto is not installed (scripts/deps/50-fleet.apt) and DOSEGATE_REQUIRE_REAL is set"
        );
        eprintln!("SKIP {test}: mosquitto not installed (scripts/deps/50-fleet.apt)");
    }
    found
}

/// A throwaway fleet: hub home, PKI, broker configuration, and a running mosquitto.
struct Fleet {
    dir: tempfile::TempDir,
    bin: PathBuf,
    port: u16,
    broker: Option<Child>,
    hub: HubHome,
    pki: Pki,
}

impl Fleet {
    fn new(bin: PathBuf, gateways: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let now = now_s();
        let hub = HubHome::init(
            &dir.path().join("hub"),
            &InitOptions {
                hub_id: "hub.test".into(),
                root: RoleShape {
                    keys: 1,
                    threshold: 1,
                },
                jobs: RoleShape {
                    keys: 1,
                    threshold: 1,
                },
                lifetime_s: 3600,
                now,
            },
        )
        .unwrap();
        let pki = Pki::init(&dir.path().join("hub/pki"), now).unwrap();
        pki.issue_broker(&["localhost".into(), "127.0.0.1".into()], now)
            .unwrap();
        pki.issue_hub_clients(now).unwrap();
        for gw in gateways {
            pki.issue_gateway(&GatewayId::new(gw).unwrap(), now)
                .unwrap();
        }
        let port = ports::free_ports(1);
        let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout)
            .unwrap()
            .trim()
            .to_owned();
        broker::write(
            &pki,
            &BrokerOptions {
                bind: "127.0.0.1".into(),
                port,
                dir: dir.path().join("broker"),
                user: Some(user),
            },
        )
        .unwrap();
        let mut fleet = Self {
            dir,
            bin,
            port,
            broker: None,
            hub,
            pki,
        };
        fleet.start_broker();
        fleet
    }

    fn start_broker(&mut self) {
        let conf = broker::config_path(&self.dir.path().join("broker"));
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        self.broker = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "mosquitto did not listen; log:\n{}",
                std::fs::read_to_string(self.dir.path().join("broker/mosquitto.log"))
                    .unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGKILL: no clean shutdown, no final persistence save.
    fn kill_broker(&mut self) {
        if let Some(mut child) = self.broker.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }

    fn root(&self) -> TrustedRoot {
        self.hub.trusted_root(now_s()).unwrap()
    }

    /// The pinned root as the fleet link takes it.
    fn trust(&self) -> tokio::sync::watch::Receiver<TrustInForce> {
        tokio::sync::watch::channel(TrustInForce::pinned(self.root())).1
    }

    fn gateway_tls(&self, gw: &str) -> Arc<rustls::ClientConfig> {
        let files = self.pki.gateway_files(&GatewayId::new(gw).unwrap());
        let key = mqtt::file_signer(&std::fs::read(&files.key).unwrap()).unwrap();
        Arc::new(
            mqtt::tls_config(
                &std::fs::read(self.pki.ca_cert()).unwrap(),
                &std::fs::read(&files.cert).unwrap(),
                key,
            )
            .unwrap(),
        )
    }

    fn link_config(&self, gw: &str) -> LinkConfig {
        LinkConfig {
            gateway: GatewayId::new(gw).unwrap(),
            host: "localhost".into(),
            port: self.port,
            keep_alive: Duration::from_secs(5),
            session_expiry_s: 600,
            versions: vec![],
            measurements: vec![],
            insecure: true,
        }
    }

    fn hub_options(&self, cn: &str) -> rumqttc::v5::MqttOptions {
        let files = if cn == HUB_CLIENT_CN {
            self.pki.hub_files()
        } else {
            self.pki.publisher_files()
        };
        let tls = fleet::tls_config(&self.pki.ca_cert(), &files).unwrap();
        fleet::mqtt_options(cn, "localhost", self.port, Arc::new(tls))
    }

    fn hub_service(&self) -> HubService {
        let keys = self.hub.role_keys(Role::Jobs, &self.root()).unwrap();
        HubService::open(&self.dir.path().join("hub/fleet"), keys, true).unwrap()
    }

    fn store(&self) -> PathBuf {
        self.dir.path().join("hub/fleet")
    }
}

impl Drop for Fleet {
    fn drop(&mut self) {
        self.kill_broker();
    }
}

/// A real ledger of `n` records (insecure development mode): start, insecure-mode, then jobs of
/// six events each, sealed by the core's chain writer.
fn chain(gw: &str, n: u64) -> Vec<LedgerEntry> {
    use dosegate_core::ledger::{Chain, ChainHead, Event, EventKind, StartBody};
    let key = SoftwareKey::from_bytes(&[0x61; 32]).unwrap();
    let mut chain = Chain::new(gw, ChainHead::EMPTY, true).unwrap();
    let start = StartBody {
        ak: None,
        key: dosegate_core::envelope::Signer::public_key(&key).to_sec1(),
        ver: "test".into(),
    };
    let kinds = [
        EventKind::Received,
        EventKind::Verified,
        EventKind::Printing,
        EventKind::Printed,
        EventKind::Measured,
        EventKind::Released,
    ];
    (0..n)
        .map(|seq| {
            let event = match seq {
                0 => Event {
                    job: None,
                    body: cbor::to_vec(&start).unwrap(),
                    kind: EventKind::GatewayStart,
                },
                1 => Event {
                    job: None,
                    body: Vec::new(),
                    kind: EventKind::InsecureMode,
                },
                _ => {
                    let i = usize::try_from(seq - 2).unwrap();
                    Event {
                        job: Some(format!("job-{}", i / 6)),
                        body: cbor::to_vec(&"test").unwrap(),
                        kind: kinds[i % 6],
                    }
                }
            };
            let sealed = chain.seal_entry(event, 1000 + seq, 1, &key).unwrap();
            chain.commit(&sealed).unwrap();
            let bytes = sealed.bytes().to_vec();
            LedgerEntry {
                seq,
                hash: Sha256::digest(&bytes).into(),
                bytes,
                recorded_ms: 0,
            }
        })
        .collect()
}

/// Connects a raw MQTT client and returns it with a channel of its incoming packets.
fn raw_client(
    options: rumqttc::v5::MqttOptions,
) -> (AsyncClient, mpsc::UnboundedReceiver<Result<Packet, String>>) {
    let (client, mut eventloop) = AsyncClient::new(options, 64);
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let item = match eventloop.poll().await {
                Ok(Event::Incoming(p)) => Ok(p),
                Ok(Event::Outgoing(_)) => continue,
                Err(e) => Err(e.to_string()),
            };
            let stop = item.is_err();
            if tx.send(item).is_err() || stop {
                break;
            }
        }
    });
    (client, rx)
}

async fn next_matching<T>(
    rx: &mut mpsc::UnboundedReceiver<Result<Packet, String>>,
    within: Duration,
    mut pick: impl FnMut(&Result<Packet, String>) -> Option<T>,
) -> Option<T> {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let item = tokio::time::timeout_at(deadline, rx.recv()).await.ok()??;
        if let Some(t) = pick(&item) {
            return Some(t);
        }
    }
}

fn gateway_options(fleet: &Fleet, gw: &str) -> rumqttc::v5::MqttOptions {
    mqtt::mqtt_options(&fleet.link_config(gw), fleet.gateway_tls(gw), 1).unwrap()
}

#[tokio::test]
async fn a_gateway_can_neither_write_nor_read_another_gateways_topics() {
    let Some(bin) = require_mosquitto("acl isolation") else {
        return;
    };
    let fleet = Fleet::new(bin, &["gw-a", "gw-b"]);
    let (a, mut a_rx) = raw_client(gateway_options(&fleet, "gw-a"));
    let (b, mut b_rx) = raw_client(gateway_options(&fleet, "gw-b"));
    for rx in [&mut a_rx, &mut b_rx] {
        assert!(
            next_matching(rx, Duration::from_secs(5), |p| {
                matches!(p, Ok(Packet::ConnAck(_))).then_some(())
            })
            .await
            .is_some()
        );
    }
    // gw-a subscribes to gw-b's down topics (granted by MQTT, but the ACL delivers nothing);
    // gw-b subscribes to its own (the positive control).
    a.subscribe("spoke/gw-b/down/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    b.subscribe("spoke/gw-b/down/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    for rx in [&mut a_rx, &mut b_rx] {
        next_matching(rx, Duration::from_secs(5), |p| {
            matches!(p, Ok(Packet::SubAck(_))).then_some(())
        })
        .await
        .expect("SUBACK");
    }

    // Writing into another gateway's upward topic: PUBACK "not authorized".
    a.publish("spoke/gw-b/up/evt", QoS::AtLeastOnce, false, vec![1])
        .await
        .unwrap();
    let reason = next_matching(&mut a_rx, Duration::from_secs(5), |p| match p {
        Ok(Packet::PubAck(ack)) => Some(ack.reason),
        _ => None,
    })
    .await
    .expect("PUBACK");
    assert_eq!(reason, PubAckReason::NotAuthorized);
    // Writing into its own upward topic is allowed (no subscriber yet).
    a.publish("spoke/gw-a/up/evt", QoS::AtLeastOnce, false, vec![1])
        .await
        .unwrap();
    let reason = next_matching(&mut a_rx, Duration::from_secs(5), |p| match p {
        Ok(Packet::PubAck(ack)) => Some(ack.reason),
        _ => None,
    })
    .await
    .expect("PUBACK");
    assert!(matches!(
        reason,
        PubAckReason::Success | PubAckReason::NoMatchingSubscribers
    ));
    // A gateway cannot write into its own down topics either (only the hub can).
    a.publish("spoke/gw-a/down/job", QoS::AtLeastOnce, false, vec![1])
        .await
        .unwrap();
    let reason = next_matching(&mut a_rx, Duration::from_secs(5), |p| match p {
        Ok(Packet::PubAck(ack)) => Some(ack.reason),
        _ => None,
    })
    .await
    .expect("PUBACK");
    assert_eq!(reason, PubAckReason::NotAuthorized);

    // The hub publishes a command to gw-b: gw-b gets it, gw-a does not.
    let gw_b = GatewayId::new("gw-b").unwrap();
    let (topic, payload, _) = fleet::command(&gw_b, HubOp::Rebirth).unwrap();
    fleet::publish_once(
        fleet.hub_options(HUB_PUBLISHER_CN),
        topic,
        payload.clone(),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    let got = next_matching(&mut b_rx, Duration::from_secs(5), |p| match p {
        Ok(Packet::Publish(p)) => Some(p.payload.to_vec()),
        _ => None,
    })
    .await;
    assert_eq!(got, Some(payload));
    let leaked = next_matching(&mut a_rx, Duration::from_secs(1), |p| match p {
        Ok(Packet::Publish(p)) => Some(p.topic.clone()),
        _ => None,
    })
    .await;
    assert_eq!(leaked, None, "gw-a received gw-b's message");
}

#[tokio::test]
async fn a_client_without_a_certificate_is_refused() {
    let Some(bin) = require_mosquitto("no client certificate") else {
        return;
    };
    let fleet = Fleet::new(bin, &[]);
    let mut roots = rustls::RootCertStore::empty();
    for c in
        <rustls::pki_types::CertificateDer as rustls::pki_types::pem::PemObject>::pem_file_iter(
            fleet.pki.ca_cert(),
        )
        .unwrap()
    {
        roots.add(c.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let options = fleet::mqtt_options("anonymous", "localhost", fleet.port, Arc::new(tls));
    let (_client, mut rx) = raw_client(options);
    let first = next_matching(&mut rx, Duration::from_secs(10), |p| Some(p.clone()))
        .await
        .expect("the broker answered nothing at all");
    assert!(
        first.is_err(),
        "a client without a certificate got {first:?}"
    );
}

fn s_client(fleet: &Fleet, version: &str) -> (bool, String) {
    let files = fleet.pki.gateway_files(&GatewayId::new("gw-a").unwrap());
    let out = Command::new("openssl")
        .args(["s_client", "-brief", version, "-connect"])
        .arg(format!("127.0.0.1:{}", fleet.port))
        .arg("-CAfile")
        .arg(fleet.pki.ca_cert())
        .arg("-cert")
        .arg(&files.cert)
        .arg("-key")
        .arg(&files.key)
        .stdin(Stdio::null())
        .output()
        .expect("openssl (scripts/deps/50-fleet.apt)");
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    (out.status.success(), text)
}

#[tokio::test]
async fn a_client_offering_only_tls_1_2_is_refused() {
    let Some(bin) = require_mosquitto("tls 1.2 refused") else {
        return;
    };
    let fleet = Fleet::new(bin, &["gw-a"]);
    // Positive control: the same certificate over TLS 1.3 completes the handshake.
    let (ok13, text13) = s_client(&fleet, "-tls1_3");
    assert!(ok13 && text13.contains("TLSv1.3"), "TLS 1.3: {text13}");
    let (ok12, text12) = s_client(&fleet, "-tls1_2");
    assert!(!ok12, "TLS 1.2 handshake succeeded: {text12}");
    assert!(!text12.contains("Protocol version: TLSv1.2"), "{text12}");
}

async fn wait_status(
    status: &mut watch::Receiver<LinkStatus>,
    within: Duration,
    done: impl Fn(&LinkStatus) -> bool,
) -> LinkStatus {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let s = status.borrow().clone();
        if done(&s) {
            return s;
        }
        if tokio::time::timeout_at(deadline, status.changed())
            .await
            .is_err()
        {
            panic!("timed out; last status {s:?}");
        }
    }
}

fn spawn_hub(
    fleet: &Fleet,
    report: mpsc::UnboundedSender<HubEvent>,
) -> (
    oneshot::Sender<()>,
    tokio::task::JoinHandle<anyhow::Result<HubService>>,
) {
    let (stop, stop_rx) = oneshot::channel::<()>();
    let task = tokio::spawn(fleet::serve(
        fleet.hub_service(),
        fleet.hub_options(HUB_CLIENT_CN),
        report,
        async {
            let _ = stop_rx.await;
        },
    ));
    (stop, task)
}

#[tokio::test]
async fn broker_killed_mid_stream_every_event_reaches_the_hub_exactly_once() {
    const N: u64 = 300;
    let Some(bin) = require_mosquitto("broker SIGKILL") else {
        return;
    };
    let mut fleet = Fleet::new(bin, &["gw-a"]);
    let entries = chain("gw-a", N);
    let (report_tx, mut report) = mpsc::unbounded_channel();
    let (hub_stop, hub) = spawn_hub(&fleet, report_tx.clone());

    let (ledger_tx, ledger_rx) = mpsc::channel(1024);
    let (inbound_tx, _inbound_rx) = mpsc::channel::<Inbound>(16);
    let (status_tx, mut status) = watch::channel(LinkStatus::default());
    let (gw_stop, gw_stop_rx) = oneshot::channel::<()>();
    let outbox = Outbox::new(
        OutboxConfig {
            resend_after_ms: 2000,
            ..OutboxConfig::default()
        },
        0,
    );
    let link = tokio::spawn(mqtt::run(
        fleet.link_config("gw-a"),
        fleet.gateway_tls("gw-a"),
        fleet.trust(),
        outbox,
        ledger_rx,
        inbound_tx,
        mpsc::channel::<Outbound>(1).1,
        status_tx,
        async {
            let _ = gw_stop_rx.await;
        },
    ));

    // 1. A first third streams in while the hub is online.
    let (first, rest) = entries.split_at(100);
    let (second, third) = rest.split_at(100);
    for e in first {
        ledger_tx.send(e.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    wait_status(&mut status, Duration::from_secs(30), |s| {
        s.receipted.is_some_and(|(seq, _)| seq >= 50)
    })
    .await;
    // 2. The hub goes offline; the second third is published and acknowledged by the broker,
    //    which queues it for the hub's session, and is then SIGKILLed: the queue is lost.
    hub_stop.send(()).unwrap();
    hub.await.unwrap().unwrap();
    for e in second {
        ledger_tx.send(e.clone()).await.unwrap();
    }
    wait_status(&mut status, Duration::from_secs(30), |s| s.published >= 200).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    fleet.kill_broker();
    tokio::time::sleep(Duration::from_secs(1)).await;
    // 3. Broker and hub come back; the last third streams in.
    fleet.start_broker();
    let (hub_stop, hub) = spawn_hub(&fleet, report_tx);
    for e in third {
        ledger_tx.send(e.clone()).await.unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let last = entries.last().unwrap();
    let done = wait_status(&mut status, Duration::from_secs(60), |s| {
        s.receipted == Some((N - 1, last.hash)) && s.backlog == 0
    })
    .await;
    gw_stop.send(()).unwrap();
    hub_stop.send(()).unwrap();
    link.await.unwrap().unwrap();
    let service = hub.await.unwrap().unwrap();

    let mut stored: BTreeMap<u64, usize> = BTreeMap::new();
    let mut duplicates = 0;
    while let Ok(event) = report.try_recv() {
        match event {
            HubEvent::Stored { seq, .. } => *stored.entry(seq).or_default() += 1,
            HubEvent::Duplicate { .. } => duplicates += 1,
            HubEvent::Refused { reason, .. } => panic!("hub refused a record: {reason}"),
            _ => {}
        }
    }
    eprintln!(
        "broker SIGKILL: {N} events, {} published by the gateway, {duplicates} duplicates ignored, {} connections",
        done.published, done.connections
    );
    assert!(done.connections >= 2, "the gateway never reconnected");
    assert_eq!(stored.len(), usize::try_from(N).unwrap(), "events lost");
    assert!(stored.values().all(|&n| n == 1), "an event stored twice");
    let gw = GatewayId::new("gw-a").unwrap();
    assert_eq!(service.inbox().covered(&gw), Some((N - 1, last.hash)));
    // The hub's store holds each record byte for byte, and it chains: reopening rebuilds the
    // inbox from the files, checking every link.
    let reopened = fleet.hub_service();
    assert_eq!(reopened.inbox().covered(&gw), Some((N - 1, last.hash)));
    for e in &entries {
        let path = fleet
            .store()
            .join("gw-a/events")
            .join(format!("{:020}.cose", e.seq));
        assert_eq!(std::fs::read(&path).unwrap(), e.bytes);
    }
}

fn exercise(fleet: &Fleet, jobs: u64, interval_ms: u64) -> Command {
    let files = fleet.pki.gateway_files(&GatewayId::new("gw-a").unwrap());
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_dosegate"));
    cmd.args(["fleet", "exercise", "--gateway-id", "gw-a", "--json"])
        .arg("--ledger")
        .arg(fleet.dir.path().join("gw/ledger"))
        .arg("--insecure-dev-key")
        .arg(fleet.dir.path().join("gw/dev.key"))
        .arg("--trust-root")
        .arg(fleet.dir.path().join("hub/trust-root.cbor"))
        .arg("--broker")
        .arg(format!("localhost:{}", fleet.port))
        .arg("--ca")
        .arg(fleet.pki.ca_cert())
        .arg("--cert")
        .arg(&files.cert)
        .arg("--key")
        .arg(&files.key)
        .args(["--jobs", &jobs.to_string()])
        .args(["--interval-ms", &interval_ms.to_string()])
        .args(["--resend-after-ms", "2000", "--wait", "60s"])
        .stdin(Stdio::null());
    cmd
}

#[tokio::test]
async fn gateway_killed_mid_job_every_record_reaches_the_hub_exactly_once_and_verifies() {
    let Some(bin) = require_mosquitto("gateway SIGKILL") else {
        return;
    };
    let fleet = Fleet::new(bin, &["gw-a"]);
    std::fs::create_dir_all(fleet.dir.path().join("gw")).unwrap();
    let (hub_stop, hub_stop_rx) = oneshot::channel::<()>();
    let (report_tx, mut report) = mpsc::unbounded_channel();
    let hub = tokio::spawn(fleet::serve(
        fleet.hub_service(),
        fleet.hub_options(HUB_CLIENT_CN),
        report_tx,
        async {
            let _ = hub_stop_rx.await;
        },
    ));

    // Run 1 records 100 jobs slowly; it is SIGKILLed once the hub has stored 60 records, so in
    // the middle of some job, with records durable in the ledger but not yet delivered.
    let mut child = exercise(&fleet, 100, 3)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stored: BTreeMap<u64, usize> = BTreeMap::new();
    let mut duplicates = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while stored.len() < 60 {
        match tokio::time::timeout_at(deadline, report.recv()).await {
            Ok(Some(HubEvent::Stored { seq, .. })) => *stored.entry(seq).or_default() += 1,
            Ok(Some(_)) => {}
            _ => panic!("the hub stored only {} records", stored.len()),
        }
    }
    child.kill().unwrap();
    let status = child.wait().unwrap();
    assert!(
        !status.success(),
        "the first run finished before it was killed"
    );

    // Run 2 reopens the ledger (recovering a torn tail, verifying every record), re-sends what
    // the hub has not receipted, records 2 more jobs, and exits 0 once everything is receipted.
    // Blocking wait off the runtime thread: the hub keeps serving meanwhile.
    let mut second = exercise(&fleet, 2, 0);
    let out = tokio::task::spawn_blocking(move || second.output().unwrap())
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    hub_stop.send(()).unwrap();
    hub.await.unwrap().unwrap();
    let mut refused = Vec::new();
    while let Ok(event) = report.try_recv() {
        match event {
            HubEvent::Stored { seq, .. } => *stored.entry(seq).or_default() += 1,
            HubEvent::Duplicate { .. } => duplicates += 1,
            HubEvent::Refused { reason, .. } => refused.push(reason),
            _ => {}
        }
    }
    assert!(
        out.status.success() && refused.is_empty(),
        "second run: {}\n{}\nrefused by the hub: {refused:#?}\nstored at the hub: {:?}\nbroker log: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
        stored.keys().collect::<Vec<_>>(),
        std::fs::read_to_string(fleet.dir.path().join("broker/mosquitto.log")).unwrap_or_default(),
    );

    let ledger = dosegate::store::read_dir(&fleet.dir.path().join("gw/ledger")).unwrap();
    let n = ledger.records.len();
    eprintln!(
        "gateway SIGKILL: {n} records in the ledger, {} stored at the hub, {duplicates} duplicates ignored; {}",
        stored.len(),
        String::from_utf8_lossy(&out.stdout).trim()
    );
    assert_eq!(stored.len(), n, "records lost or invented");
    assert!(stored.values().all(|&c| c == 1), "a record stored twice");
    // The hub's copies are the ledger's records byte for byte, and they verify as a ledger.
    let mut verifier = dosegate_core::ledger::Verifier::new(dosegate_core::ledger::LedgerTrust {
        gateway_id: Some("gw-a".into()),
        allow_insecure: true,
        ..Default::default()
    });
    for (seq, record) in ledger.records.iter().enumerate() {
        let path = fleet
            .store()
            .join("gw-a/events")
            .join(format!("{seq:020}.cose"));
        let copy = std::fs::read(&path).unwrap();
        assert_eq!(&copy, record, "seq {seq}");
        verifier.push(&copy).unwrap();
    }
    assert_eq!(verifier.finish().head().next_seq, n as u64);
}

#[tokio::test]
async fn jobs_and_commands_from_the_hub_reach_the_gateway_and_forged_receipts_do_not_count() {
    let Some(bin) = require_mosquitto("jobs and commands") else {
        return;
    };
    let fleet = Fleet::new(bin, &["gw-a"]);
    let (ledger_tx, ledger_rx) = mpsc::channel(16);
    let (inbound_tx, mut inbound) = mpsc::channel::<Inbound>(16);
    let (status_tx, mut status) = watch::channel(LinkStatus::default());
    let (gw_stop, gw_stop_rx) = oneshot::channel::<()>();
    let link = tokio::spawn(mqtt::run(
        fleet.link_config("gw-a"),
        fleet.gateway_tls("gw-a"),
        fleet.trust(),
        Outbox::new(OutboxConfig::default(), 0),
        ledger_rx,
        inbound_tx,
        mpsc::channel::<Outbound>(1).1,
        status_tx,
        async {
            let _ = gw_stop_rx.await;
        },
    ));
    wait_status(&mut status, Duration::from_secs(10), |s| s.subscribed).await;
    let gw = GatewayId::new("gw-a").unwrap();
    let publish = |topic: String, payload: Vec<u8>| {
        fleet::publish_once(
            fleet.hub_options(HUB_PUBLISHER_CN),
            topic,
            payload,
            Duration::from_secs(5),
        )
    };

    let job = b"a signed job would be here".to_vec();
    publish(format!("spoke/{gw}/down/job"), job.clone())
        .await
        .unwrap();
    let (topic, payload, _) = fleet::command(&gw, HubOp::Attest([9; 32])).unwrap();
    publish(topic, payload).await.unwrap();
    let (topic, payload, _) = fleet::command(&gw, HubOp::Abort("job-1".into())).unwrap();
    publish(topic, payload).await.unwrap();
    let mut got = Vec::new();
    while got.len() < 3 {
        got.push(
            tokio::time::timeout(Duration::from_secs(5), inbound.recv())
                .await
                .expect("inbound message")
                .unwrap(),
        );
    }
    assert_eq!(
        got,
        [
            Inbound::Job(job),
            Inbound::Attest([9; 32]),
            Inbound::Abort("job-1".into())
        ]
    );

    // One record goes out; a receipt signed by a key outside the jobs role is refused and the
    // record stays in the outbox; the genuine receipt then clears it.
    let entry = chain("gw-a", 1).remove(0);
    ledger_tx.send(entry.clone()).await.unwrap();
    wait_status(&mut status, Duration::from_secs(5), |s| s.published >= 1).await;
    let payload = dosegate_core::fleet::ReceiptPayload {
        v: dosegate_core::fleet::FLEET_FORMAT_VERSION,
        gw: gw.clone(),
        seq: 0,
        hash: entry.hash,
        time: 0,
    };
    let forger = SoftwareKey::from_bytes(&[0x77; 32]).unwrap();
    let forged = dosegate_core::fleet::receipt::sign(&payload, &[&forger]).unwrap();
    publish(format!("spoke/{gw}/down/ack"), forged)
        .await
        .unwrap();
    let s = wait_status(&mut status, Duration::from_secs(5), |s| s.refused >= 1).await;
    assert_eq!((s.backlog, s.receipted), (1, None));
    let keys = fleet.hub.role_keys(Role::Jobs, &fleet.root()).unwrap();
    let genuine = dosegate_core::fleet::receipt::sign(&payload, &[&keys[0]]).unwrap();
    publish(format!("spoke/{gw}/down/ack"), genuine)
        .await
        .unwrap();
    wait_status(&mut status, Duration::from_secs(5), |s| {
        s.backlog == 0 && s.receipted == Some((0, entry.hash))
    })
    .await;
    gw_stop.send(()).unwrap();
    link.await.unwrap().unwrap();
}

/// The CA and the certificate the hub issued for gw's enrolled TPM key, with `key` as the TLS
/// client key.
#[cfg(feature = "real-swtpm")]
fn tpm_tls(
    fleet: &Fleet,
    gw: &str,
    key: Arc<dyn dosegate_core::envelope::Signer + Send + Sync>,
) -> Arc<rustls::ClientConfig> {
    let files = fleet.pki.gateway_files(&GatewayId::new(gw).unwrap());
    Arc::new(
        mqtt::tls_config(
            &std::fs::read(fleet.pki.ca_cert()).unwrap(),
            &std::fs::read(&files.cert).unwrap(),
            key,
        )
        .unwrap(),
    )
}

/// Enrolls gw with the TPM's identity (request written as the field engineer's tool does).
#[cfg(feature = "real-swtpm")]
fn enroll_tpm(fleet: &Fleet, gw: &str, tpm: &Arc<dosegate::tpm::Tpm>) {
    let gw = GatewayId::new(gw).unwrap();
    let request = dosegate::cmd::tpm::write_enroll_request(tpm, &gw).unwrap();
    fleet.pki.enroll_gateway(&gw, &request, now_s()).unwrap();
    assert!(
        !fleet.pki.gateway_files(&gw).key.exists(),
        "no private key at the hub for a TPM-enrolled gateway"
    );
}

#[cfg(feature = "real-swtpm")]
#[tokio::test]
async fn an_mtls_connection_whose_client_key_is_in_the_tpm_is_accepted_and_another_key_refused() {
    let Some(bin) = require_mosquitto("TPM-held client key") else {
        return;
    };
    let Some(swtpm) = swtpm::Swtpm::start() else {
        return;
    };
    let fleet = Fleet::new(bin, &[]);
    let tpm = Arc::new(swtpm.open());
    enroll_tpm(&fleet, "gw-t", &tpm);

    // The TPM-held key: TLS 1.3 handshake signed by TPM2_Sign, CONNACK, and a publish on its own
    // topic is accepted (the broker took the CN as username).
    let options = mqtt::mqtt_options(
        &fleet.link_config("gw-t"),
        tpm_tls(&fleet, "gw-t", tpm.tls_signer()),
        1,
    )
    .unwrap();
    let (client, mut rx) = raw_client(options);
    let first = next_matching(&mut rx, Duration::from_secs(10), |p| Some(p.clone()))
        .await
        .unwrap();
    assert!(
        matches!(first, Ok(Packet::ConnAck(_))),
        "TPM key: {first:?}"
    );
    client
        .publish(
            "spoke/gw-t/up/status",
            QoS::AtLeastOnce,
            false,
            b"ok".to_vec(),
        )
        .await
        .unwrap();
    let ack = next_matching(&mut rx, Duration::from_secs(5), |p| match p {
        Ok(Packet::PubAck(a)) => Some(a.reason),
        _ => None,
    })
    .await;
    assert!(
        matches!(
            ack,
            Some(PubAckReason::Success | PubAckReason::NoMatchingSubscribers)
        ),
        "{ack:?}"
    );

    // The same certificate with another key (the TPM's event key, then a software key): the
    // broker refuses the handshake.
    let event_key: Arc<dyn dosegate_core::envelope::Signer + Send + Sync> = tpm.clone();
    let software: Arc<dyn dosegate_core::envelope::Signer + Send + Sync> =
        Arc::new(SoftwareKey::from_bytes(&[0x5a; 32]).unwrap());
    for wrong in [event_key, software] {
        let options = mqtt::mqtt_options(
            &fleet.link_config("gw-t"),
            tpm_tls(&fleet, "gw-t", wrong),
            2,
        )
        .unwrap();
        let (_client, mut rx) = raw_client(options);
        let first = next_matching(&mut rx, Duration::from_secs(10), |p| Some(p.clone()))
            .await
            .expect("the broker answered nothing at all");
        assert!(first.is_err(), "a wrong client key got {first:?}");
    }
}

#[cfg(feature = "real-swtpm")]
#[tokio::test]
#[allow(clippy::too_many_lines)]
async fn the_hub_challenges_a_gateway_and_verifies_its_tpm_quote_through_the_broker() {
    use dosegate_core::attest::{Component, GoldenValues};
    let Some(bin) = require_mosquitto("attestation challenge") else {
        return;
    };
    let Some(swtpm) = swtpm::Swtpm::start() else {
        return;
    };
    let fleet = Fleet::new(bin, &[]);
    let tpm = Arc::new(swtpm.open());
    let mut golden = GoldenValues::default();
    for (what, bytes) in [
        (Component::Binary, b"gateway binary".as_slice()),
        (Component::Policy, b"policy v1"),
    ] {
        let m = tpm.measurement(what, bytes);
        golden.0.entry(what).or_default().insert(m.digest);
        tpm.extend(&m).unwrap();
    }
    enroll_tpm(&fleet, "gw-t", &tpm);
    let gw = GatewayId::new("gw-t").unwrap();

    // The gateway: the link with its TPM-held client key, and a lifecycle stand-in that answers
    // every challenge through the real answer builder and the link's outbound channel.
    let (_ledger_tx, ledger_rx) = mpsc::channel(1);
    let (inbound_tx, mut inbound) = mpsc::channel::<Inbound>(16);
    let (outbound_tx, outbound_rx) = mpsc::channel::<Outbound>(16);
    let (status_tx, mut status) = watch::channel(LinkStatus::default());
    let (gw_stop, gw_stop_rx) = oneshot::channel::<()>();
    let link = tokio::spawn(mqtt::run(
        LinkConfig {
            insecure: false,
            ..fleet.link_config("gw-t")
        },
        tpm_tls(&fleet, "gw-t", tpm.tls_signer()),
        fleet.trust(),
        Outbox::new(OutboxConfig::default(), 0),
        ledger_rx,
        inbound_tx,
        outbound_rx,
        status_tx,
        async {
            let _ = gw_stop_rx.await;
        },
    ));
    let answering = {
        let tpm = Arc::clone(&tpm);
        let gw = gw.clone();
        tokio::spawn(async move {
            while let Some(msg) = inbound.recv().await {
                if let Inbound::Attest(nonce) = msg {
                    let answer = dosegate::attest::answer_challenge(&*tpm, &gw, &nonce).unwrap();
                    outbound_tx.send(Outbound::Attest(answer)).await.unwrap();
                }
            }
        })
    };
    wait_status(&mut status, Duration::from_secs(10), |s| s.subscribed).await;

    // The hub: the AK kept at enrollment verifies the quote over its fresh nonce and the log.
    let ak = fleet.pki.gateway_identity(&gw).unwrap().ak().key().clone();
    assert_eq!(ak, tpm.ak_public());
    let options = || fleet.hub_options(HUB_PUBLISHER_CN);
    let attested = fleet::attest(
        options(),
        &gw,
        &ak,
        [1; 32],
        Some(&golden),
        Duration::from_secs(15),
    )
    .await
    .unwrap()
    .expect("the quote verifies");
    assert!(attested.golden_checked());
    assert_eq!(attested.log().0.len(), 2);
    assert_eq!(attested.pcr(), (swtpm::PCR, tpm.read_pcr().unwrap()));

    // A second challenge with another nonce: the earlier answer does not satisfy it, a fresh
    // quote does; golden values that do not admit the measured policy refuse it.
    let mut other = golden.clone();
    other
        .0
        .insert(Component::Policy, [[0xee; 32]].into_iter().collect());
    let refused = fleet::attest(
        options(),
        &gw,
        &ak,
        [2; 32],
        Some(&other),
        Duration::from_secs(15),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(refused.code(), "attest-not-golden");
    // Another AK (as if the gateway's TPM were swapped) refuses the quote.
    let wrong_ak = tpm.event_public();
    let refused = fleet::attest(
        options(),
        &gw,
        &wrong_ak,
        [3; 32],
        None,
        Duration::from_secs(15),
    )
    .await
    .unwrap()
    .unwrap_err();
    assert_eq!(refused.code(), "attest-bad-signature");

    gw_stop.send(()).unwrap();
    link.await.unwrap().unwrap();
    answering.abort();
}

#[tokio::test]
async fn a_policy_published_by_the_hub_reaches_the_gateways_store_and_a_rollback_does_not() {
    use dosegate::fleet_state::{Applied, FleetState};
    let Some(bin) = require_mosquitto("policy update") else {
        return;
    };
    let fleet = Fleet::new(bin, &["gw-a"]);
    let policy = include_str!("../../../policies/fdm-hctz-printlet.toml");
    let keys = fleet.hub.role_keys(Role::Policies, &fleet.root()).unwrap();
    let bundle = |v: u32| {
        fleet::sign_policy_bundle(
            &policy.replacen("version = 1", &format!("version = {v}"), 1),
            &keys,
        )
        .unwrap()
    };
    let publish = |(topic, bytes): (String, Vec<u8>)| {
        fleet::publish_retained(
            fleet.hub_options(HUB_PUBLISHER_CN),
            topic,
            bytes,
            Duration::from_secs(5),
        )
    };
    // Published (retained) before the gateway connects: it arrives at subscription.
    publish(bundle(3)).await.unwrap();

    let (_ledger_tx, ledger_rx) = mpsc::channel(1);
    let (inbound_tx, mut inbound) = mpsc::channel::<Inbound>(16);
    let (status_tx, _status) = watch::channel(LinkStatus::default());
    let (gw_stop, gw_stop_rx) = oneshot::channel::<()>();
    let link = tokio::spawn(mqtt::run(
        fleet.link_config("gw-a"),
        fleet.gateway_tls("gw-a"),
        fleet.trust(),
        Outbox::new(OutboxConfig::default(), 0),
        ledger_rx,
        inbound_tx,
        mpsc::channel::<Outbound>(1).1,
        status_tx,
        async {
            let _ = gw_stop_rx.await;
        },
    ));
    let mut store =
        FleetState::open(&fleet.dir.path().join("gw-state/fleet"), fleet.root()).unwrap();
    let mut next_applied = async || loop {
        let msg = tokio::time::timeout(Duration::from_secs(10), inbound.recv())
            .await
            .expect("metadata from the broker")
            .unwrap();
        if let Inbound::Metadata(topic, bytes) = msg {
            return store.apply(topic, &bytes, now_s());
        }
    };
    let applied = next_applied().await.unwrap();
    assert!(
        matches!(applied, Applied::Policy { version: 3, .. }),
        "{applied:?}"
    );
    // An older signed version replayed on the broker: refused as a rollback.
    publish(bundle(2)).await.unwrap();
    assert_eq!(
        next_applied().await.unwrap_err().code(),
        "metadata-rollback"
    );
    // A newer one: applied.
    publish(bundle(4)).await.unwrap();
    assert!(matches!(
        next_applied().await.unwrap(),
        Applied::Policy { version: 4, .. }
    ));
    assert!(store.policy("fdm-hctz-printlet", 4).is_some());
    gw_stop.send(()).unwrap();
    link.await.unwrap().unwrap();
}

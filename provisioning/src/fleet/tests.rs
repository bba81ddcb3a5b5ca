use dosegate_core::cbor;
use dosegate_core::fleet::{Birth, LedgerHead, receipt};
use dosegate_core::ledger::{Chain, ChainHead, Event, EventKind, StartBody};
use sha2::{Digest as _, Sha256};

use super::*;

fn jobs_key() -> SoftwareKey {
    SoftwareKey::from_bytes(&[0x44; 32]).unwrap()
}

/// A real ledger (insecure development mode): start, insecure-mode, then jobs of six events.
/// `salt` changes the times, so two chains with different salts differ from seq 0 on.
fn ledger(gw: &str, n: u64, salt: u64) -> Vec<Vec<u8>> {
    let key = SoftwareKey::from_bytes(&[0x51; 32]).unwrap();
    let mut chain = Chain::new(gw, ChainHead::EMPTY, true).unwrap();
    let mut out = Vec::new();
    let start = StartBody {
        ak: None,
        key: key.public_key().to_sec1(),
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
    for seq in 0..n {
        let (event, counter) = match seq {
            0 => (
                Event {
                    job: None,
                    body: cbor::to_vec(&start).unwrap(),
                    kind: EventKind::GatewayStart,
                },
                1,
            ),
            1 => (
                Event {
                    job: None,
                    body: Vec::new(),
                    kind: EventKind::InsecureMode,
                },
                1,
            ),
            _ => {
                let i = usize::try_from(seq - 2).unwrap();
                (
                    Event {
                        job: Some(format!("job-{}", i / 6)),
                        body: cbor::to_vec(&"test").unwrap(),
                        kind: kinds[i % 6],
                    },
                    1,
                )
            }
        };
        let sealed = chain
            .seal_entry(event, 1000 + seq + salt, counter, &key)
            .unwrap();
        chain.commit(&sealed).unwrap();
        out.push(sealed.bytes().to_vec());
    }
    out
}

fn chain(gw: &str, n: u64) -> Vec<Vec<u8>> {
    ledger(gw, n, 0)
}

fn open(dir: &std::path::Path) -> HubService {
    HubService::open(dir, vec![jobs_key()], true).unwrap()
}

const EVT: &str = "spoke/gw-a/up/evt";

fn receipt_seq(out: &[(String, Vec<u8>, bool)]) -> Option<u64> {
    out.iter()
        .filter(|(t, _, _)| t == "spoke/gw-a/down/ack")
        .map(|(_, p, retain)| {
            assert!(retain, "receipts are retained");
            receipt::decode_unverified(p).unwrap().seq
        })
        .next_back()
}

#[test]
fn stores_then_receipts_and_ignores_duplicates() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = open(dir.path());
    let records = chain("gw-a", 3);
    for (seq, r) in records.iter().enumerate() {
        let (out, events) = hub.handle(EVT, r).unwrap();
        assert_eq!(receipt_seq(&out), Some(seq as u64));
        assert!(events.contains(&HubEvent::Stored {
            gateway: "gw-a".into(),
            seq: seq as u64
        }));
        let stored = dir.path().join(format!("gw-a/events/{seq:020}.cose"));
        assert_eq!(std::fs::read(stored).unwrap(), *r);
    }
    let (out, events) = hub.handle(EVT, &records[1]).unwrap();
    assert_eq!(
        events,
        [HubEvent::Duplicate {
            gateway: "gw-a".into(),
            seq: 1
        }]
    );
    // A duplicate right after the receipt was sent does not send it again (a re-sent burst must
    // not turn into a receipt burst); once REPEAT_INTERVAL_MS has passed, it does.
    assert_eq!(receipt_seq(&out), None);
    std::thread::sleep(std::time::Duration::from_millis(REPEAT_INTERVAL_MS + 50));
    let (out, _) = hub.handle(EVT, &records[1]).unwrap();
    assert_eq!(receipt_seq(&out), Some(2));
}

#[test]
fn keeps_tampering_as_evidence_and_never_receipts_it() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = open(dir.path());
    let records = chain("gw-a", 1);
    hub.handle(EVT, &records[0]).unwrap();
    let forged = ledger("gw-a", 1, 9).remove(0);
    let (out, events) = hub.handle(EVT, &forged).unwrap();
    assert!(out.is_empty());
    assert!(
        matches!(&events[..], [HubEvent::Refused { reason, .. }] if reason.contains("tampering"))
    );
    let evidence: Vec<_> = std::fs::read_dir(dir.path().join("gw-a/tampering"))
        .unwrap()
        .collect();
    assert_eq!(evidence.len(), 1);
    let stored = std::fs::read(dir.path().join(format!("gw-a/events/{:020}.cose", 0))).unwrap();
    assert_eq!(stored, records[0], "the first record stays");
}

#[test]
fn refuses_a_record_of_another_gateway_on_this_gateways_topic() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = open(dir.path());
    let other = chain("gw-b", 1);
    let (out, events) = hub.handle(EVT, &other[0]).unwrap();
    assert!(out.is_empty());
    assert!(matches!(&events[..], [HubEvent::Refused { .. }]));
    assert_eq!(hub.inbox().stored(&GatewayId::new("gw-b").unwrap()), 0);
}

#[test]
fn asks_resend_from_on_a_gap_and_on_a_birth_ahead_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = open(dir.path());
    let records = chain("gw-a", 4);
    hub.handle(EVT, &records[0]).unwrap();
    let (out, _) = hub.handle(EVT, &records[2]).unwrap();
    // A second record past the same gap does not ask again.
    let (again, _) = hub.handle(EVT, &records[3]).unwrap();
    assert!(again.iter().all(|(t, _, _)| t != "spoke/gw-a/down/cmd"));
    let cmd = out
        .iter()
        .find(|(t, _, _)| t == "spoke/gw-a/down/cmd")
        .unwrap();
    assert_eq!(
        HubCommand::decode(&cmd.1).unwrap().op,
        Command::ResendFrom(1)
    );
    assert_eq!(receipt_seq(&out), None, "nothing new is contiguous");

    let birth = Birth {
        v: FLEET_FORMAT_VERSION,
        bd: 1,
        gw: GatewayId::new("gw-a").unwrap(),
        head: LedgerHead {
            hash: Sha256::digest(&records[3]).into(),
            next: 4,
        },
        time: 0,
        insecure: true,
        versions: vec![],
        measurements: vec![],
    };
    // Within REPEAT_INTERVAL_MS the same ask is not repeated; after it, the birth asks again.
    let (out, _) = hub
        .handle("spoke/gw-a/up/birth", &birth.to_cbor().unwrap())
        .unwrap();
    assert!(out.iter().all(|(t, _, _)| t != "spoke/gw-a/down/cmd"));
    std::thread::sleep(std::time::Duration::from_millis(REPEAT_INTERVAL_MS + 50));
    let (out, _) = hub
        .handle("spoke/gw-a/up/birth", &birth.to_cbor().unwrap())
        .unwrap();
    let cmd = out
        .iter()
        .find(|(t, _, _)| t == "spoke/gw-a/down/cmd")
        .unwrap();
    assert_eq!(
        HubCommand::decode(&cmd.1).unwrap().op,
        Command::ResendFrom(1)
    );
    assert_eq!(receipt_seq(&out), Some(0));
}

#[test]
fn a_restarted_hub_rebuilds_its_inbox_from_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let records = chain("gw-a", 5);
    {
        let mut hub = open(dir.path());
        for r in &records[..3] {
            hub.handle(EVT, r).unwrap();
        }
    }
    let mut hub = open(dir.path());
    let gw = GatewayId::new("gw-a").unwrap();
    assert_eq!(hub.inbox().stored(&gw), 3);
    let (_, events) = hub.handle(EVT, &records[2]).unwrap();
    assert!(matches!(&events[..], [HubEvent::Duplicate { seq: 2, .. }]));
    let (out, _) = hub.handle(EVT, &records[3]).unwrap();
    assert_eq!(receipt_seq(&out), Some(3));
    assert_eq!(hub.status()[0].covered_seq, Some(3));
}

#[test]
fn never_receipts_a_record_that_does_not_verify_as_a_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = open(dir.path());
    let records = chain("gw-a", 4);
    hub.handle(EVT, &records[0]).unwrap();
    // A record that chains (right seq and prev) but whose signature is broken.
    let mut bad = records[1].clone();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let (out, events) = hub.handle(EVT, &bad).unwrap();
    assert_eq!(receipt_seq(&out), None);
    assert!(
        events.iter().any(
            |e| matches!(e, HubEvent::Refused { reason, .. } if reason.contains("verification"))
        )
    );
    assert_eq!(
        hub.verified(&GatewayId::new("gw-a").unwrap()).map(|v| v.0),
        Some(0)
    );
    assert!(hub.status()[0].failed.is_some());
}

#[test]
fn refuses_insecure_ledgers_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = HubService::open(dir.path(), vec![jobs_key()], false).unwrap();
    let records = chain("gw-a", 2);
    let (out, _) = hub.handle(EVT, &records[0]).unwrap();
    let (out2, events) = hub.handle(EVT, &records[1]).unwrap();
    assert_eq!(receipt_seq(&out).or(receipt_seq(&out2)), None);
    assert!(events.iter().any(|e| matches!(e, HubEvent::Refused { .. })));
}

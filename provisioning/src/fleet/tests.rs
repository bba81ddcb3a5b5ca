use coset::cbor::value::Value;
use dosegate_core::cbor;
use dosegate_core::envelope::{self, ContentType};
use dosegate_core::fleet::{Birth, LedgerHead, receipt};
use sha2::{Digest as _, Sha256};

use super::*;

fn jobs_key() -> SoftwareKey {
    SoftwareKey::from_bytes(&[0x44; 32]).unwrap()
}

fn record(gw: &str, seq: u64, prev: [u8; 32], salt: u8) -> Vec<u8> {
    let payload = Value::Map(vec![
        (Value::Text("v".into()), Value::Integer(1.into())),
        (Value::Text("gw".into()), Value::Text(gw.into())),
        (Value::Text("seq".into()), Value::Integer(seq.into())),
        (Value::Text("prev".into()), Value::Bytes(prev.to_vec())),
        (Value::Text("time".into()), Value::Integer(salt.into())),
    ]);
    let key = SoftwareKey::from_bytes(&[0x51; 32]).unwrap();
    envelope::sign(
        ContentType::LedgerEntry,
        &cbor::to_vec(&payload).unwrap(),
        &[&key],
    )
    .unwrap()
}

fn chain(gw: &str, n: u64) -> Vec<Vec<u8>> {
    let mut prev = [0u8; 32];
    (0..n)
        .map(|seq| {
            let r = record(gw, seq, prev, 0);
            prev = Sha256::digest(&r).into();
            r
        })
        .collect()
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
    let mut hub = HubService::open(dir.path(), vec![jobs_key()]).unwrap();
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
    let mut hub = HubService::open(dir.path(), vec![jobs_key()]).unwrap();
    let records = chain("gw-a", 1);
    hub.handle(EVT, &records[0]).unwrap();
    let forged = record("gw-a", 0, [0; 32], 9);
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
    let mut hub = HubService::open(dir.path(), vec![jobs_key()]).unwrap();
    let other = chain("gw-b", 1);
    let (out, events) = hub.handle(EVT, &other[0]).unwrap();
    assert!(out.is_empty());
    assert!(matches!(&events[..], [HubEvent::Refused { .. }]));
    assert_eq!(hub.inbox().stored(&GatewayId::new("gw-b").unwrap()), 0);
}

#[test]
fn asks_resend_from_on_a_gap_and_on_a_birth_ahead_of_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let mut hub = HubService::open(dir.path(), vec![jobs_key()]).unwrap();
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
        let mut hub = HubService::open(dir.path(), vec![jobs_key()]).unwrap();
        for r in &records[..3] {
            hub.handle(EVT, r).unwrap();
        }
    }
    let mut hub = HubService::open(dir.path(), vec![jobs_key()]).unwrap();
    let gw = GatewayId::new("gw-a").unwrap();
    assert_eq!(hub.inbox().stored(&gw), 3);
    let (_, events) = hub.handle(EVT, &records[2]).unwrap();
    assert!(matches!(&events[..], [HubEvent::Duplicate { seq: 2, .. }]));
    let (out, _) = hub.handle(EVT, &records[3]).unwrap();
    assert_eq!(receipt_seq(&out), Some(3));
    assert_eq!(hub.status()[0].covered_seq, Some(3));
}

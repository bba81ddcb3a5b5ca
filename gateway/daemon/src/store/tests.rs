//! Store tests: torn tails cut at every byte, damage, segments.

use super::*;
use dosegate_core::attest::EventLog;
use dosegate_core::cbor;
use dosegate_core::envelope::{Signer, SoftwareKey};
use dosegate_core::ledger::verify::verify_records;
use dosegate_core::ledger::{Chain, ChainHead, Event, EventKind, LedgerTrust, StartBody};

fn records(n: usize) -> Vec<Vec<u8>> {
    let key = SoftwareKey::from_bytes(&[3; 32]).unwrap();
    let mut chain = Chain::new("gw-store", ChainHead::EMPTY, true).unwrap();
    let start = Event {
        job: None,
        body: cbor::to_vec(&StartBody {
            ak: None,
            key: key.public_key().to_sec1(),
            ver: "t".into(),
        })
        .unwrap(),
        kind: EventKind::GatewayStart,
    };
    let mut out = Vec::new();
    let s = chain.seal_entry(start, 0, 1, &key).unwrap();
    chain.commit(&s).unwrap();
    out.push(s.bytes().to_vec());
    while out.len() < n {
        let s = chain
            .seal_checkpoint(1, chain.head().counter + 1, EventLog::default(), None, &key)
            .unwrap();
        chain.commit(&s).unwrap();
        out.push(s.bytes().to_vec());
    }
    out
}

fn trust() -> LedgerTrust {
    LedgerTrust {
        allow_insecure: true,
        ..LedgerTrust::default()
    }
}

#[test]
fn append_then_reopen_returns_every_record() {
    let dir = tempfile::tempdir().unwrap();
    let recs = records(5);
    let (mut store, existing, _) = Store::open(dir.path(), 1 << 20, WritePattern::Whole).unwrap();
    assert!(existing.is_empty());
    for r in &recs {
        store.append(r).unwrap();
    }
    drop(store);
    let (_, existing, recovery) = Store::open(dir.path(), 1 << 20, WritePattern::Whole).unwrap();
    assert_eq!(existing, recs);
    assert_eq!(recovery.truncated_bytes, 0);
}

#[test]
fn write_torn_at_any_byte_loses_only_the_unfinished_record() {
    let recs = records(3);
    let full: Vec<u8> = recs.iter().flat_map(|r| frame::encode(r)).collect();
    let last_frame = frame::HEADER_LEN + recs[2].len();
    let committed = full.len() - last_frame;
    for cut in committed..full.len() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("ledger-00000000.dgl"), &full[..cut]).unwrap();
        let contents = read_dir(dir.path()).unwrap();
        assert_eq!(contents.torn_tail, cut != committed, "cut at {cut}");
        let (mut store, existing, recovery) =
            Store::open(dir.path(), 1 << 20, WritePattern::Whole).unwrap();
        assert_eq!(existing, recs[..2].to_vec(), "cut at {cut}");
        assert_eq!(recovery.truncated_bytes, (cut - committed) as u64);
        // The writer can go on from there, and the result verifies.
        store.append(&recs[2]).unwrap();
        let contents = read_dir(dir.path()).unwrap();
        assert!(!contents.torn_tail);
        verify_records(contents.records.iter().map(Vec::as_slice), trust()).unwrap();
    }
}

#[test]
fn zero_filled_tail_after_power_loss_is_dropped() {
    let recs = records(2);
    let mut bytes: Vec<u8> = recs.iter().flat_map(|r| frame::encode(r)).collect();
    bytes.extend_from_slice(&[0u8; 4096]);
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ledger-00000000.dgl"), &bytes).unwrap();
    let (_, existing, recovery) = Store::open(dir.path(), 1 << 20, WritePattern::Whole).unwrap();
    assert_eq!(existing, recs);
    assert_eq!(recovery.truncated_bytes, 4096);
}

#[test]
fn damaged_record_in_the_middle_refuses_to_open() {
    let recs = records(4);
    let mut bytes: Vec<u8> = recs.iter().flat_map(|r| frame::encode(r)).collect();
    let second = frame::HEADER_LEN + recs[0].len();
    bytes[second + frame::HEADER_LEN] ^= 0xff; // first byte of record 1: no longer a COSE tag
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger-00000000.dgl");
    std::fs::write(&path, &bytes).unwrap();
    let err = Store::open(dir.path(), 1 << 20, WritePattern::Whole).unwrap_err();
    assert!(
        matches!(err, StoreError::Damaged { index: 1, offset, .. } if offset == second),
        "{err}"
    );
    // Nothing was truncated: the evidence stays.
    assert_eq!(std::fs::read(&path).unwrap(), bytes);
}

#[test]
fn segments_roll_and_a_missing_segment_is_refused() {
    let recs = records(6);
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _, _) = Store::open(dir.path(), 600, WritePattern::Chunked(7)).unwrap();
    for r in &recs {
        store.append(r).unwrap();
    }
    let contents = read_dir(dir.path()).unwrap();
    assert!(contents.segments >= 3, "{} segments", contents.segments);
    assert_eq!(contents.records, recs);
    std::fs::remove_file(dir.path().join("ledger-00000001.dgl")).unwrap();
    assert!(matches!(
        read_dir(dir.path()),
        Err(StoreError::MissingSegment {
            expected: 1,
            found: 2
        })
    ));
}

#[test]
fn torn_frame_in_an_earlier_segment_is_damage() {
    let recs = records(4);
    let dir = tempfile::tempdir().unwrap();
    let (mut store, _, _) = Store::open(dir.path(), 600, WritePattern::Whole).unwrap();
    for r in &recs {
        store.append(r).unwrap();
    }
    drop(store);
    let first = dir.path().join("ledger-00000000.dgl");
    let len = std::fs::metadata(&first).unwrap().len();
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&first)
        .unwrap();
    f.set_len(len - 1).unwrap();
    assert!(matches!(
        Store::open(dir.path(), 600, WritePattern::Whole),
        Err(StoreError::Damaged { .. })
    ));
}

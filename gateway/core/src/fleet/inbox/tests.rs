use super::*;

fn gw(id: &str) -> GatewayId {
    GatewayId::new(id).unwrap()
}

fn hash(seq: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&seq.to_be_bytes());
    h[31] = 0xa5;
    h
}

fn entry(seq: u64) -> EntryHeader {
    EntryHeader {
        seq,
        prev: if seq == 0 { [0; 32] } else { hash(seq - 1) },
        hash: hash(seq),
    }
}

#[test]
fn each_new_contiguous_entry_advances_what_can_be_receipted() {
    let mut inbox = Inbox::new();
    let g = gw("spoke-01");
    for seq in 0..3 {
        assert_eq!(
            inbox.receive(&g, &entry(seq)),
            Ok(Received::New {
                covered: Some((seq, hash(seq))),
                gap_from: None
            })
        );
    }
    assert_eq!(inbox.covered(&g), Some((2, hash(2))));
    assert_eq!(inbox.stored(&g), 3);
}

#[test]
fn ignores_duplicates_by_gateway_seq_and_hash() {
    let mut inbox = Inbox::new();
    let (a, b) = (gw("spoke-01"), gw("spoke-02"));
    inbox.receive(&a, &entry(0)).unwrap();
    assert_eq!(inbox.receive(&a, &entry(0)), Ok(Received::Duplicate));
    // The same seq from another gateway is that gateway's own, new entry.
    assert!(matches!(
        inbox.receive(&b, &entry(0)),
        Ok(Received::New { .. })
    ));
    assert_eq!(inbox.stored(&a), 1);
}

#[test]
fn flags_the_same_seq_with_another_hash_as_tampering() {
    let mut inbox = Inbox::new();
    let g = gw("spoke-01");
    inbox.receive(&g, &entry(0)).unwrap();
    let forged = EntryHeader {
        hash: [0xff; 32],
        ..entry(0)
    };
    assert_eq!(
        inbox.receive(&g, &forged),
        Err(InboxError::Tampering {
            gateway: g.clone(),
            seq: 0,
            stored: hex::encode(hash(0)),
            received: hex::encode([0xff; 32]),
        })
    );
    assert_eq!(inbox.covered(&g), Some((0, hash(0))));
}

#[test]
fn detects_a_gap_and_fills_it_when_the_missing_entries_arrive() {
    let mut inbox = Inbox::new();
    let g = gw("spoke-01");
    inbox.receive(&g, &entry(0)).unwrap();
    assert_eq!(
        inbox.receive(&g, &entry(3)),
        Ok(Received::New {
            covered: None,
            gap_from: Some(1)
        })
    );
    assert_eq!(inbox.covered(&g), Some((0, hash(0))));
    inbox.receive(&g, &entry(1)).unwrap();
    assert_eq!(
        inbox.receive(&g, &entry(2)),
        Ok(Received::New {
            covered: Some((3, hash(3))),
            gap_from: None
        })
    );
}

#[test]
fn refuses_an_entry_that_does_not_chain_to_its_neighbours() {
    let mut inbox = Inbox::new();
    let g = gw("spoke-01");
    inbox.receive(&g, &entry(0)).unwrap();
    let bad_prev = EntryHeader {
        prev: [7; 32],
        ..entry(1)
    };
    assert!(matches!(
        inbox.receive(&g, &bad_prev),
        Err(InboxError::BrokenChain { seq: 1, .. })
    ));
    // seq 2 arrives first; then a seq 1 whose hash is not seq 2's prev.
    inbox.receive(&g, &entry(2)).unwrap();
    let wrong_hash = EntryHeader {
        hash: [8; 32],
        ..entry(1)
    };
    assert!(matches!(
        inbox.receive(&g, &wrong_hash),
        Err(InboxError::BrokenChain { seq: 2, .. })
    ));
    let first_not_genesis = EntryHeader {
        prev: [1; 32],
        ..entry(0)
    };
    assert!(matches!(
        inbox.receive(&gw("spoke-09"), &first_not_genesis),
        Err(InboxError::BrokenChain { seq: 0, .. })
    ));
}

#[test]
fn refuses_entries_too_far_past_a_gap() {
    let mut inbox = Inbox::new();
    let g = gw("spoke-01");
    assert_eq!(
        inbox.receive(&g, &entry(MAX_AHEAD + 1)),
        Err(InboxError::TooFarAhead {
            gateway: g.clone(),
            seq: MAX_AHEAD + 1,
            missing: 0
        })
    );
    assert_eq!(inbox.stored(&g), 0);
}

#[test]
fn a_birth_head_beyond_the_store_asks_for_the_missing_entries() {
    let mut inbox = Inbox::new();
    let g = gw("spoke-01");
    assert_eq!(inbox.missing_from(&g, 0), None);
    assert_eq!(inbox.missing_from(&g, 5), Some(0));
    for seq in 0..5 {
        inbox.restore(&g, &entry(seq)).unwrap();
    }
    assert_eq!(inbox.missing_from(&g, 5), None);
    assert_eq!(inbox.missing_from(&g, 7), Some(5));
}

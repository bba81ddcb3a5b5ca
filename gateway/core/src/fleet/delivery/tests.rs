use std::collections::BTreeMap;

use super::*;
use crate::envelope::{ContentType, KeyId, Signer, SoftwareKey};
use crate::fleet::{FLEET_FORMAT_VERSION, GatewayId, ReceiptPayload, receipt};
use crate::trust::{RoleSpec, Roles, TrustRoot, TrustedRoot};

const T0: u64 = 1_800_000_000_000;

struct Hub {
    root: TrustedRoot,
    jobs: SoftwareKey,
    gw: GatewayId,
}

impl Hub {
    fn new() -> Self {
        let r = SoftwareKey::from_bytes(&[0x41; 32]).unwrap();
        let jobs = SoftwareKey::from_bytes(&[0x42; 32]).unwrap();
        let mut keys = BTreeMap::new();
        for k in [&r, &jobs] {
            let p = k.public_key();
            keys.insert(p.key_id(), serde_bytes::ByteBuf::from(p.to_sec1()));
        }
        let one = |k: &SoftwareKey| RoleSpec {
            keyids: vec![k.public_key().key_id()] as Vec<KeyId>,
            threshold: 1,
        };
        let root = TrustRoot {
            keys,
            roles: Roles {
                jobs: one(&jobs),
                root: one(&r),
                models: one(&r),
                policies: one(&r),
                revocation: one(&r),
            },
            hub_id: "hub.test".into(),
            expires: 2_000_000_000,
            version: 1,
        };
        let bytes = crate::envelope::sign(
            ContentType::TrustRoot,
            &root.to_cbor().unwrap(),
            &[&r as &dyn Signer],
        )
        .unwrap();
        Self {
            root: TrustedRoot::pin(&bytes, 1_800_000_000).unwrap(),
            jobs,
            gw: GatewayId::new("spoke-01").unwrap(),
        }
    }

    fn receipt(&self, seq: u64, hash: [u8; 32]) -> VerifiedReceipt {
        let bytes = receipt::sign(
            &ReceiptPayload {
                v: FLEET_FORMAT_VERSION,
                gw: self.gw.clone(),
                seq,
                hash,
                time: T0,
            },
            &[&self.jobs],
        )
        .unwrap();
        receipt::verify(&bytes, &self.root, &self.gw).unwrap()
    }
}

fn hash(seq: u64) -> [u8; 32] {
    let mut h = [0u8; 32];
    h[..8].copy_from_slice(&seq.to_be_bytes());
    h[31] = 0x5a;
    h
}

fn filled(n: u64, config: OutboxConfig) -> Outbox {
    let mut outbox = Outbox::new(config, 0);
    for seq in 0..n {
        outbox
            .push(seq, hash(seq), seq.to_be_bytes().to_vec(), T0 + seq)
            .unwrap();
    }
    outbox
}

fn drain(outbox: &mut Outbox, now: u64) -> Vec<u64> {
    std::iter::from_fn(|| outbox.poll_publish(now).map(|o| o.seq)).collect()
}

#[test]
fn publishes_entries_in_order_once_per_connection() {
    let mut outbox = filled(3, OutboxConfig::default());
    assert_eq!(drain(&mut outbox, T0), [0, 1, 2]);
    assert_eq!(drain(&mut outbox, T0), [] as [u64; 0]);
    outbox.push(3, hash(3), vec![3], T0).unwrap();
    assert_eq!(
        outbox.poll_publish(T0),
        Some(Outgoing {
            seq: 3,
            bytes: vec![3]
        })
    );
}

#[test]
fn refuses_entries_pushed_out_of_order() {
    let mut outbox = filled(2, OutboxConfig::default());
    assert_eq!(
        outbox.push(3, hash(3), vec![], T0),
        Err(DeliveryError::OutOfOrder {
            expected: 2,
            got: 3
        })
    );
    assert_eq!(
        outbox.push(1, hash(1), vec![], T0),
        Err(DeliveryError::OutOfOrder {
            expected: 2,
            got: 1
        })
    );
}

#[test]
fn a_receipt_covers_everything_up_to_its_seq() {
    let hub = Hub::new();
    let mut outbox = filled(5, OutboxConfig::default());
    drain(&mut outbox, T0);
    assert_eq!(outbox.on_receipt(&hub.receipt(2, hash(2))), Ok(3));
    assert_eq!(outbox.backlog(), 2);
    assert_eq!(outbox.receipted(), Some((2, hash(2))));
    // A stale or repeated receipt changes nothing.
    assert_eq!(outbox.on_receipt(&hub.receipt(1, hash(1))), Ok(0));
    assert_eq!(outbox.on_receipt(&hub.receipt(2, hash(2))), Ok(0));
    outbox.on_connected();
    assert_eq!(drain(&mut outbox, T0), [3, 4]);
}

#[test]
fn refuses_a_receipt_whose_hash_is_not_the_ledgers() {
    let hub = Hub::new();
    let mut outbox = filled(3, OutboxConfig::default());
    assert!(matches!(
        outbox.on_receipt(&hub.receipt(1, [0xee; 32])),
        Err(DeliveryError::ReceiptHashMismatch { seq: 1, .. })
    ));
    assert_eq!(outbox.backlog(), 3);
}

#[test]
fn refuses_a_receipt_beyond_the_ledger() {
    let hub = Hub::new();
    let mut outbox = filled(3, OutboxConfig::default());
    assert_eq!(
        outbox.on_receipt(&hub.receipt(3, hash(3))),
        Err(DeliveryError::ReceiptAhead {
            seq: 3,
            last: Some(2)
        })
    );
}

#[test]
fn reconnect_resends_everything_not_receipted() {
    let hub = Hub::new();
    let mut outbox = filled(4, OutboxConfig::default());
    assert_eq!(drain(&mut outbox, T0), [0, 1, 2, 3]);
    outbox.on_receipt(&hub.receipt(0, hash(0))).unwrap();
    outbox.on_connected();
    assert_eq!(drain(&mut outbox, T0), [1, 2, 3]);
}

#[test]
fn resend_from_rewinds_to_the_asked_seq() {
    let hub = Hub::new();
    let mut outbox = filled(6, OutboxConfig::default());
    drain(&mut outbox, T0);
    outbox.on_receipt(&hub.receipt(1, hash(1))).unwrap();
    outbox.resend_from(4).unwrap();
    assert_eq!(drain(&mut outbox, T0), [4, 5]);
    assert_eq!(
        outbox.resend_from(0),
        Err(DeliveryError::AlreadyReceipted { seq: 0, first: 2 })
    );
    // Asking past the end re-sends nothing and is not an error.
    outbox.resend_from(99).unwrap();
    assert_eq!(drain(&mut outbox, T0), [] as [u64; 0]);
}

#[test]
fn unreceipted_entries_are_sent_again_after_the_resend_interval() {
    let config = OutboxConfig {
        resend_after_ms: 1000,
        ..OutboxConfig::default()
    };
    let mut outbox = filled(2, config);
    drain(&mut outbox, T0);
    assert_eq!(outbox.next_tick_ms(), Some(T0 + 1000));
    assert!(!outbox.tick(T0 + 999));
    assert!(outbox.tick(T0 + 1000));
    assert_eq!(drain(&mut outbox, T0 + 1000), [0, 1]);
}

#[test]
fn refuses_new_jobs_when_the_backlog_is_too_old_or_too_long() {
    let hub = Hub::new();
    let config = OutboxConfig {
        max_backlog_age_ms: 60_000,
        max_backlog_entries: 3,
        resend_after_ms: 1000,
    };
    let mut outbox = filled(3, config);
    assert_eq!(outbox.admit_job(T0 + 60_000), Ok(()));
    assert_eq!(
        outbox.admit_job(T0 + 60_001),
        Err(DeliveryError::BacklogTooOld {
            seq: 0,
            age_ms: 60_001,
            limit_ms: 60_000
        })
    );
    outbox.push(3, hash(3), vec![], T0 + 3).unwrap();
    assert_eq!(
        outbox.admit_job(T0),
        Err(DeliveryError::BacklogTooLong { count: 4, limit: 3 })
    );
    // Once the hub receipts, the gateway takes jobs again.
    outbox.on_receipt(&hub.receipt(3, hash(3))).unwrap();
    assert_eq!(outbox.admit_job(T0 + 10_000_000), Ok(()));
    assert_eq!(outbox.oldest_unreceipted_age_ms(T0), None);
}

#[test]
fn a_restarted_outbox_continues_after_the_last_receipted_seq() {
    let hub = Hub::new();
    let mut outbox = Outbox::new(OutboxConfig::default(), 10);
    assert_eq!(
        outbox.push(0, hash(0), vec![], T0),
        Err(DeliveryError::OutOfOrder {
            expected: 10,
            got: 0
        })
    );
    outbox.push(10, hash(10), vec![10], T0).unwrap();
    assert_eq!(drain(&mut outbox, T0), [10]);
    assert_eq!(outbox.on_receipt(&hub.receipt(10, hash(10))), Ok(1));
}

#[test]
fn nothing_is_sent_again_while_receipts_keep_coming() {
    let hub = Hub::new();
    let config = OutboxConfig {
        resend_after_ms: 1000,
        ..OutboxConfig::default()
    };
    let mut outbox = filled(3, config);
    drain(&mut outbox, T0);
    outbox.on_receipt(&hub.receipt(0, hash(0))).unwrap();
    // The hub is working through the backlog: the interval starts again.
    assert!(!outbox.tick(T0 + 1000));
    assert_eq!(outbox.next_tick_ms(), Some(T0 + 2000));
    assert!(!outbox.tick(T0 + 1999));
    // No further receipt for a whole interval: the rest is sent again.
    assert!(outbox.tick(T0 + 2000));
    assert_eq!(drain(&mut outbox, T0 + 2000), [1, 2]);
}

//! Tamper tests: each attack on a well-formed ledger is found, at the right index.

use super::*;
use crate::attest::quote::{QuoteInfo, marshal_attest, pcr_digest};
use crate::attest::{Component, EventLog, Measurement};
use crate::envelope::{SignError, Signer, SoftwareKey};
use crate::ledger::chain::{Chain, Quoter};
use crate::ledger::record::QuoteEvidence;
use crate::ledger::{Event, EventKind, StartBody};

const PCR: u8 = 15;

/// A fake TPM quoter: a software AK over a PCR value given by the log it was built with.
struct FakeQuoter {
    ak: SoftwareKey,
    pcr_value: [u8; 32],
    clock: std::cell::Cell<u64>,
}

impl Quoter for FakeQuoter {
    fn quote(&self, qualifying_data: &[u8]) -> Result<QuoteEvidence, SignError> {
        self.clock.set(self.clock.get() + 10);
        let info = QuoteInfo {
            qualified_signer: vec![0, 0x0b],
            extra_data: qualifying_data.to_vec(),
            clock: ClockInfo {
                clock: self.clock.get(),
                reset_count: 3,
                restart_count: 0,
                safe: true,
            },
            firmware_version: 1,
            selection: vec![PcrSelection {
                hash: ALG_SHA256,
                pcrs: vec![PCR],
            }],
            pcr_digest: pcr_digest(&[self.pcr_value]).to_vec(),
        };
        let attest = marshal_attest(&info);
        let sig = self.ak.sign(&attest)?.to_vec();
        Ok(QuoteEvidence { sig, attest })
    }
}

struct Gateway {
    id: String,
    key: SoftwareKey,
    ak: SoftwareKey,
    log: EventLog,
    insecure: bool,
}

fn gateway(id: &str, seed: u8, insecure: bool) -> Gateway {
    Gateway {
        id: id.to_owned(),
        key: SoftwareKey::from_bytes(&[seed; 32]).unwrap(),
        ak: SoftwareKey::from_bytes(&[seed + 1; 32]).unwrap(),
        log: EventLog(vec![
            Measurement {
                pcr: PCR,
                what: Component::Binary,
                digest: [0xb1; 32],
            },
            Measurement {
                pcr: PCR,
                what: Component::Model,
                digest: [0xd1; 32],
            },
        ]),
        insecure,
    }
}

fn job_event(kind: EventKind, job: &str) -> Event {
    Event {
        job: Some(job.to_owned()),
        body: cbor::to_vec(&format!("{} body", kind.as_str())).unwrap(),
        kind,
    }
}

/// Builds a ledger: start, one full job, a checkpoint, a second job, a checkpoint.
fn ledger(gw: &Gateway) -> Vec<Vec<u8>> {
    let quoter = FakeQuoter {
        ak: SoftwareKey::from_bytes(&gw.ak.to_bytes()).unwrap(),
        pcr_value: gw.log.replay(PCR).unwrap(),
        clock: std::cell::Cell::new(100),
    };
    let mut chain = Chain::new(&gw.id, ChainHead::EMPTY, gw.insecure).unwrap();
    let mut out = Vec::new();
    let start = StartBody {
        ak: (!gw.insecure).then(|| gw.ak.public_key().to_sec1()),
        key: gw.key.public_key().to_sec1(),
        ver: "0.1.0".into(),
    };
    let start = Event {
        job: None,
        body: cbor::to_vec(&start).unwrap(),
        kind: EventKind::GatewayStart,
    };
    let mut counter = 1;
    let mut push = |chain: &mut Chain, sealed: crate::ledger::SealedRecord| {
        chain.commit(&sealed).unwrap();
        out.push(sealed.bytes().to_vec());
    };
    let s = chain.seal_entry(start, 1_000, counter, &gw.key).unwrap();
    push(&mut chain, s);
    let mut time = 1_000;
    for job in ["job-1", "job-2"] {
        for kind in [
            EventKind::Received,
            EventKind::Verified,
            EventKind::Printing,
            EventKind::Printed,
            EventKind::Measured,
            EventKind::Released,
        ] {
            time += 1;
            let s = chain
                .seal_entry(job_event(kind, job), time, counter, &gw.key)
                .unwrap();
            push(&mut chain, s);
        }
        counter += 1;
        let q: Option<&dyn Quoter> = if gw.insecure { None } else { Some(&quoter) };
        let s = chain
            .seal_checkpoint(time, counter, gw.log.clone(), q, &gw.key)
            .unwrap();
        push(&mut chain, s);
    }
    out
}

fn trust(gw: &Gateway) -> LedgerTrust {
    LedgerTrust {
        gateway_id: Some(gw.id.clone()),
        event_key: Some(gw.key.public_key()),
        attestation_key: Some(gw.ak.public_key()),
        golden: None,
        app_pcr: PCR,
        allow_insecure: false,
    }
}

fn verify(records: &[Vec<u8>], trust: LedgerTrust) -> Result<VerifiedLedger, LedgerError> {
    verify_records(records.iter().map(Vec::as_slice), trust)
}

#[test]
fn well_formed_ledger_verifies_with_pinned_and_with_declared_keys() {
    let gw = gateway("gw-a", 1, false);
    let records = ledger(&gw);
    let v = verify(&records, trust(&gw)).unwrap();
    assert_eq!(v.records(), 15);
    assert_eq!(v.checkpoints(), 2);
    assert_eq!(v.insecure_records(), 0);
    assert_eq!(v.covered_by_checkpoint(), 15);
    assert!(v.keys_pinned());
    assert_eq!(v.jobs().get("job-2"), Some(&JobStage::Released));
    let declared = verify(&records, LedgerTrust::default()).unwrap();
    assert!(!declared.keys_pinned());
    assert_eq!(declared.head(), v.head());
}

#[test]
fn edited_entry_is_found_at_its_index() {
    let gw = gateway("gw-a", 1, false);
    let mut records = ledger(&gw);
    // Flip one byte inside the payload of record 4: the signature breaks.
    let r = &mut records[4];
    let pos = r.len() / 2;
    r[pos] ^= 0x01;
    let err = verify(&records, trust(&gw)).unwrap_err();
    assert_eq!(err.index, 4);
}

#[test]
fn re_signed_edit_breaks_the_chain_at_the_next_record() {
    // An attacker holding the key re-signs an edited record: the next `prev` exposes it.
    let gw = gateway("gw-a", 1, false);
    let mut records = ledger(&gw);
    let rec = Record::decode(&records[3]).unwrap();
    let Record::Entry { mut payload, .. } = rec else {
        panic!("entry expected")
    };
    payload.time += 1;
    records[3] = crate::envelope::sign(
        crate::envelope::ContentType::LedgerEntry,
        &cbor::to_vec(&payload).unwrap(),
        &[&gw.key],
    )
    .unwrap();
    let err = verify(&records, trust(&gw)).unwrap_err();
    assert_eq!(err.index, 4);
    assert!(matches!(err.fault, Fault::Prev { .. }));
}

#[test]
fn deleted_entry_is_found_at_its_index() {
    let gw = gateway("gw-a", 1, false);
    let mut records = ledger(&gw);
    records.remove(5);
    let err = verify(&records, trust(&gw)).unwrap_err();
    assert_eq!(
        err,
        LedgerError {
            index: 5,
            fault: Fault::Seq {
                expected: 5,
                found: 6
            }
        }
    );
}

#[test]
fn reordered_entries_are_found_at_the_first_swapped_index() {
    let gw = gateway("gw-a", 1, false);
    let mut records = ledger(&gw);
    records.swap(9, 10);
    let err = verify(&records, trust(&gw)).unwrap_err();
    assert_eq!(err.index, 9);
    assert!(matches!(
        err.fault,
        Fault::Seq {
            expected: 9,
            found: 10
        }
    ));
}

#[test]
fn truncated_tail_drops_are_detected_by_the_frame_scan() {
    use crate::ledger::frame::{self, Tail};
    let gw = gateway("gw-a", 1, false);
    let records = ledger(&gw);
    let bytes: Vec<u8> = records.iter().flat_map(|r| frame::encode(r)).collect();
    let last_start = bytes.len() - records.last().unwrap().len() - frame::HEADER_LEN;
    let scan = frame::scan(&bytes[..bytes.len() - 3]);
    assert_eq!(scan.records.len(), records.len() - 1);
    assert_eq!(scan.tail, Tail::Torn { offset: last_start });
}

#[test]
fn damaged_frame_before_good_ones_is_not_taken_for_a_torn_tail() {
    use crate::ledger::frame::{self, Tail};
    let gw = gateway("gw-a", 1, false);
    let records = ledger(&gw);
    let mut bytes: Vec<u8> = records.iter().flat_map(|r| frame::encode(r)).collect();
    let r0 = frame::HEADER_LEN + records[0].len();
    bytes[r0 + 1] = 0xff; // length prefix of record 1
    let scan = frame::scan(&bytes);
    assert_eq!(scan.records.len(), 1);
    assert_eq!(scan.tail, Tail::Damaged { offset: r0 });
}

#[test]
fn spliced_entry_from_another_gateway_is_found() {
    let a = gateway("gw-a", 1, false);
    let b = gateway("gw-b", 5, false);
    let mut records = ledger(&a);
    let other = ledger(&b);
    records[6] = other[6].clone();
    let err = verify(&records, trust(&a)).unwrap_err();
    assert_eq!(err.index, 6);
    assert!(matches!(err.fault, Fault::Prev { .. }));
}

#[test]
fn foreign_ledger_is_refused_under_another_gateways_trust() {
    let a = gateway("gw-a", 1, false);
    let b = gateway("gw-a", 5, false); // same id, other keys: a cloned identity
    let err = verify(&ledger(&b), trust(&a)).unwrap_err();
    assert_eq!(err.index, 0);
    assert!(matches!(err.fault, Fault::KeyChanged { .. }));
}

#[test]
fn inserted_entry_signed_by_a_stranger_is_found() {
    let gw = gateway("gw-a", 1, false);
    let stranger = SoftwareKey::from_bytes(&[9; 32]).unwrap();
    let mut records = ledger(&gw);
    let Record::Entry { payload, .. } = Record::decode(&records[2]).unwrap() else {
        panic!()
    };
    records[2] = crate::envelope::sign(
        crate::envelope::ContentType::LedgerEntry,
        &cbor::to_vec(&payload).unwrap(),
        &[&stranger],
    )
    .unwrap();
    let err = verify(&records, trust(&gw)).unwrap_err();
    assert_eq!(err.index, 2);
    assert!(matches!(err.fault, Fault::Signature(_)));
}

#[test]
fn checkpoint_quote_over_other_measurements_is_refused() {
    let gw = gateway("gw-a", 1, false);
    let records = ledger(&gw);
    let mut golden = crate::attest::GoldenValues::default();
    golden.0.insert(
        Component::Binary,
        std::collections::BTreeSet::from([[0xb1; 32]]),
    );
    golden.0.insert(
        Component::Model,
        std::collections::BTreeSet::from([[0xd2; 32]]),
    );
    let mut t = trust(&gw);
    t.golden = Some(golden);
    let err = verify(&records, t).unwrap_err();
    assert_eq!(err.index, 7);
    assert!(matches!(
        err.fault,
        Fault::Measurement(MeasurementError::NotGolden { index: 1, .. })
    ));
}

#[test]
fn checkpoint_quote_by_another_ak_is_refused() {
    let gw = gateway("gw-a", 1, false);
    let records = ledger(&gw);
    let mut t = trust(&gw);
    t.attestation_key = Some(SoftwareKey::from_bytes(&[42; 32]).unwrap().public_key());
    let err = verify(&records, t).unwrap_err();
    // The start record already declares an AK that differs from the pinned one.
    assert_eq!(err.index, 0);
    assert!(matches!(err.fault, Fault::KeyChanged { .. }));
}

#[test]
fn insecure_ledger_is_refused_unless_allowed_and_always_reported() {
    let gw = gateway("gw-dev", 1, true);
    let records = ledger(&gw);
    let err = verify(&records, trust(&gw)).unwrap_err();
    assert_eq!(
        err,
        LedgerError {
            index: 0,
            fault: Fault::Insecure
        }
    );
    let mut t = trust(&gw);
    t.allow_insecure = true;
    let v = verify(&records, t).unwrap();
    assert_eq!(v.insecure_records(), 15);
}

#[test]
fn counter_rollback_is_found() {
    let gw = gateway("gw-a", 1, false);
    let mut chain = Chain::new(&gw.id, ChainHead::EMPTY, false).unwrap();
    let start = Event {
        job: None,
        body: cbor::to_vec(&StartBody {
            ak: None,
            key: gw.key.public_key().to_sec1(),
            ver: "x".into(),
        })
        .unwrap(),
        kind: EventKind::GatewayStart,
    };
    let s = chain.seal_entry(start.clone(), 1, 5, &gw.key).unwrap();
    chain.commit(&s).unwrap();
    // The chain refuses to seal a start that does not bump the counter…
    assert!(matches!(
        chain.seal_entry(start.clone(), 2, 5, &gw.key),
        Err(crate::ledger::ChainError::Counter { .. })
    ));
    // …and a forged record with a stale counter is found by the verifier.
    let mut head = chain.head();
    head.counter = 0;
    let forged_chain = Chain::new(&gw.id, head, false).unwrap();
    let forged = forged_chain.seal_entry(start, 2, 3, &gw.key).unwrap();
    let err = verify(
        &[s.bytes().to_vec(), forged.bytes().to_vec()],
        LedgerTrust::default(),
    )
    .unwrap_err();
    assert_eq!(
        err,
        LedgerError {
            index: 1,
            fault: Fault::Counter {
                previous: 5,
                found: 3,
                rule: "must increase"
            }
        }
    );
}

#[test]
fn illegal_job_transition_is_found() {
    let gw = gateway("gw-a", 1, false);
    let mut records = ledger(&gw);
    // Re-seal the tail so that job-2 jumps from received to printing.
    let v = verify(&records[..9], trust(&gw)).unwrap();
    let chain = Chain::new(&gw.id, v.head(), false).unwrap();
    let s = chain
        .seal_entry(
            job_event(EventKind::Printing, "job-2"),
            5_000,
            v.head().counter,
            &gw.key,
        )
        .unwrap();
    records.truncate(9);
    records.push(s.bytes().to_vec());
    let err = verify(&records, trust(&gw)).unwrap_err();
    assert_eq!(err.index, 9);
    assert!(matches!(err.fault, Fault::Transition { .. }));
}

//! Tests against a real software TPM (swtpm), behind the `real-swtpm` feature.
//!
//! Each test starts its own swtpm on free TCP ports with a fresh state directory and kills it
//! after (tss-esapi 7 ignores `path=` in TCTI strings, so one TPM per port). With
//! `DOSEGATE_REQUIRE_REAL=1` a missing swtpm fails the test; otherwise the test says it skipped.
#![cfg(feature = "real-swtpm")]

use std::collections::BTreeSet;
use std::io::{BufRead as _, BufReader, Read as _};
use std::process::{Command, Stdio};
use std::time::Duration;

use dosegate::ledger::{GatewayKeys, Ledger, LedgerOptions};
use dosegate::store;
use dosegate::tpm::{Tpm, TpmError};
use dosegate_core::attest::quote::{ALG_SHA256, QuoteExpectation, verify_quote};
use dosegate_core::attest::{Component, EventLog, GoldenValues, PcrSelection, QuoteError};
use dosegate_core::envelope::Signer as _;
use dosegate_core::ledger::verify::verify_records;
use dosegate_core::ledger::{Event, EventKind, Fault, LedgerTrust, Quoter as _};
use sha2::{Digest as _, Sha256};

#[path = "support/ports.rs"]
mod ports;
#[path = "support/swtpm.rs"]
mod swtpm;
use swtpm::{PCR, Swtpm};

fn measure_all(tpm: &Tpm) {
    for (what, bytes) in [
        (Component::Binary, b"gateway binary".as_slice()),
        (Component::Config, b"config"),
        (Component::TrustRoot, b"trust root"),
        (Component::Policy, b"policy"),
        (Component::Model, b"model"),
    ] {
        tpm.extend(&tpm.measurement(what, bytes)).unwrap();
    }
}

#[test]
fn keys_are_p256_and_the_event_key_signs_verifiably() {
    let Some(swtpm) = Swtpm::start() else { return };
    let tpm = swtpm.open();
    assert_ne!(tpm.ak_public(), tpm.event_public());
    let ek = tpm.ek_public().unwrap();
    assert_ne!(ek, tpm.ak_public());
    let sig = tpm.sign(b"release record").unwrap();
    assert!(tpm.public_key().verify(b"release record", &sig));
    assert!(!tpm.public_key().verify(b"another record", &sig));
    // The same EK is derived again (it is a primary key from the endorsement seed).
    assert_eq!(tpm.ek_public().unwrap(), ek);
}

#[test]
fn quote_verifies_against_the_replayed_log_and_tampering_is_refused() {
    let Some(swtpm) = Swtpm::start() else { return };
    let tpm = swtpm.open();
    tpm.adopt_log(EventLog::default()).unwrap();
    measure_all(&tpm);
    let log = tpm.log();
    let pcr_value = log.replay(PCR).unwrap();
    assert_eq!(tpm.read_pcr().unwrap(), pcr_value);
    let nonce = Sha256::digest(b"hub nonce");
    let q = tpm.quote(&nonce).unwrap();
    let selection = [PcrSelection {
        hash: ALG_SHA256,
        pcrs: vec![PCR],
    }];
    let expect = |nonce: &[u8], values: &[[u8; 32]]| {
        let q = q.clone();
        verify_quote(
            &q.attest,
            &q.sig,
            &tpm.ak_public(),
            &QuoteExpectation {
                qualifying_data: nonce,
                selection: &selection,
                pcr_values: values,
            },
        )
    };
    let attested = expect(&nonce, &[pcr_value]).unwrap();
    assert_eq!(attested.info().extra_data, nonce.to_vec());

    // Tampered attestation bytes (the clock): signature fails.
    let mut bad = q.clone();
    let n = bad.attest.len();
    bad.attest[n - 40] ^= 1;
    assert_eq!(
        verify_quote(
            &bad.attest,
            &bad.sig,
            &tpm.ak_public(),
            &QuoteExpectation {
                qualifying_data: &nonce,
                selection: &selection,
                pcr_values: &[pcr_value]
            }
        )
        .unwrap_err(),
        QuoteError::BadSignature
    );
    // Replayed quote for another nonce, or a log that hides a measurement.
    assert!(matches!(
        expect(b"other nonce", &[pcr_value]),
        Err(QuoteError::WrongQualifyingData { .. })
    ));
    let mut shorter = log.clone();
    shorter.0.pop();
    assert!(matches!(
        expect(&nonce, &[shorter.replay(PCR).unwrap()]),
        Err(QuoteError::PcrMismatch { .. })
    ));
    // A quote signed by the event key (TPM2_Sign over forged bytes) is not a quote by the AK.
    let forged_sig = tpm.sign(&q.attest).unwrap();
    assert_eq!(
        verify_quote(
            &q.attest,
            &forged_sig,
            &tpm.ak_public(),
            &QuoteExpectation {
                qualifying_data: &nonce,
                selection: &selection,
                pcr_values: &[pcr_value]
            }
        )
        .unwrap_err(),
        QuoteError::BadSignature
    );
}

#[test]
fn unseal_is_refused_after_the_pcr_changes() {
    let Some(swtpm) = Swtpm::start() else { return };
    let tpm = swtpm.open();
    measure_all(&tpm);
    let sealed = tpm.seal(b"local database key").unwrap();
    assert_eq!(tpm.unseal(&sealed).unwrap(), b"local database key");
    tpm.extend(&tpm.measurement(Component::Model, b"an unvalidated model"))
        .unwrap();
    let err = tpm.unseal(&sealed).unwrap_err();
    assert!(matches!(err, TpmError::PolicyRefused { .. }), "{err}");
}

#[test]
fn counter_is_monotonic_and_a_rollback_is_refused() {
    let Some(swtpm) = Swtpm::start() else { return };
    let tpm = swtpm.open();
    let mut last = tpm.counter().unwrap();
    for _ in 0..5 {
        let next = tpm.increment_counter().unwrap();
        assert!(next > last);
        last = next;
    }
    assert_eq!(tpm.counter().unwrap(), last);
    // A ledger that claims a higher counter than the TPM holds (restored on another box, or a
    // cleared TPM) cannot be continued.
    assert!(tpm.bump_counter(last + 100).is_err());
}

#[test]
fn restart_keeps_identity_and_counter() {
    let Some(mut swtpm) = Swtpm::start() else {
        return;
    };
    let (ak, ev, counter) = {
        let tpm = swtpm.open();
        let c = tpm.increment_counter().unwrap();
        (tpm.ak_public(), tpm.event_public(), c)
    };
    swtpm.restart();
    let tpm = swtpm.open();
    assert_eq!(tpm.ak_public(), ak);
    assert_eq!(tpm.event_public(), ev);
    assert_eq!(tpm.counter().unwrap(), counter);
    assert!(tpm.increment_counter().unwrap() > counter);
    // After the power cycle the PCR is back to zero: a stale log is dropped, fresh log starts.
    let stale = dosegate_core::attest::EventLog(vec![tpm.measurement(Component::Binary, b"x")]);
    assert!(tpm.adopt_log(stale).unwrap().0.is_empty());
}

#[test]
fn ledger_signed_by_the_tpm_verifies_with_quotes_and_tampering_is_found() {
    let Some(swtpm) = Swtpm::start() else { return };
    let tpm = swtpm.open();
    tpm.adopt_log(EventLog::default()).unwrap();
    measure_all(&tpm);
    let dir = tempfile::tempdir().unwrap();
    {
        let mut ledger = Ledger::open(
            dir.path(),
            "spoke-01",
            &tpm,
            LedgerOptions::default(),
            1_000,
        )
        .unwrap();
        for kind in [
            EventKind::Received,
            EventKind::Verified,
            EventKind::Printing,
            EventKind::Printed,
            EventKind::Measured,
            EventKind::Released,
        ] {
            let event = Event {
                job: Some("job-1".into()),
                body: dosegate_core::cbor::to_vec(&"evidence").unwrap(),
                kind,
            };
            ledger.record(event, 2_000).unwrap();
        }
    }
    let records = store::read_dir(dir.path()).unwrap().records;
    // start, 6 job events, checkpoint after the final one
    assert_eq!(records.len(), 8);
    let mut golden = GoldenValues::default();
    for m in &tpm.log().0 {
        golden.0.insert(m.what, BTreeSet::from([m.digest]));
    }
    let trust = LedgerTrust {
        gateway_id: Some("spoke-01".into()),
        event_key: Some(tpm.event_public()),
        attestation_key: Some(tpm.ak_public()),
        golden: Some(golden.clone()),
        app_pcr: PCR,
        allow_insecure: false,
    };
    let v = verify_records(records.iter().map(Vec::as_slice), trust.clone()).unwrap();
    assert_eq!(v.checkpoints(), 1);
    assert_eq!(v.insecure_records(), 0);

    // A model the hub never validated: the golden check names it.
    let mut other = golden;
    other
        .0
        .insert(Component::Model, BTreeSet::from([[0u8; 32]]));
    let err = verify_records(
        records.iter().map(Vec::as_slice),
        LedgerTrust {
            golden: Some(other),
            ..trust.clone()
        },
    )
    .unwrap_err();
    assert_eq!(err.index, 7);
    assert_eq!(err.fault.code(), "measurement");

    // Tampered quote inside the checkpoint: re-signing the checkpoint needs the TPM event key,
    // so flip a byte of the quote and check the record is refused at its index.
    let mut tampered = records.clone();
    let last = tampered.last_mut().unwrap();
    let pos = last.len() - 80;
    last[pos] ^= 1;
    let err = verify_records(tampered.iter().map(Vec::as_slice), trust).unwrap_err();
    assert_eq!(err.index, 7);
    assert!(
        matches!(err.fault, Fault::Signature(_) | Fault::Malformed(_)),
        "{err}"
    );
}

/// The swtpm subset of the crash tests: the writer signs with the TPM and bumps its counter, and
/// is killed at 50 random points; every returned append survives and the ledger verifies. Each
/// kill is a power cut: swtpm restarts too (PCRs reset, sessions of the dead writer gone, as the
/// kernel's resource manager would also ensure), so the writer re-measures into a fresh log.
#[test]
fn tpm_signed_writer_killed_at_random_points_keeps_every_returned_append() {
    let Some(mut swtpm) = Swtpm::start() else {
        return;
    };
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("ledger");
    let log = root.path().join("app-pcr.log");
    let mut seed = u64::from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos(),
    ) | 1;
    eprintln!("swtpm crash subset seed {seed}");
    for _ in 0..50 {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let after = seed % 12;
        let delay = (seed >> 8) % 5_000;
        let mut child = Command::new(env!("CARGO_BIN_EXE_dosegate"))
            .args(["ledger", "exercise"])
            .arg(&dir)
            .args([
                "--gateway-id",
                "spoke-tpm",
                "--jobs",
                "1000",
                "--tpm",
                &swtpm.tcti(),
            ])
            .args(["--app-pcr", "15", "--event-log"])
            .arg(&log)
            .args(["--chunk", "8"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut out = String::new();
        for _ in 0..after {
            if stdout.read_line(&mut out).unwrap() == 0 {
                break;
            }
        }
        std::thread::sleep(Duration::from_micros(delay));
        child.kill().unwrap();
        stdout.read_to_string(&mut out).unwrap();
        let _ = child.wait();
        swtpm.restart();

        let (_, records, _) = store::Store::open(
            &dir,
            store::DEFAULT_SEGMENT_BYTES,
            store::WritePattern::Whole,
        )
        .unwrap();
        let tpm = swtpm.open();
        let trust = LedgerTrust {
            gateway_id: Some("spoke-tpm".into()),
            event_key: Some(tpm.event_public()),
            attestation_key: Some(tpm.ak_public()),
            ..LedgerTrust::default()
        };
        drop(tpm);
        verify_records(records.iter().map(Vec::as_slice), trust).unwrap();
        for line in out.lines() {
            let mut parts = line.split_whitespace().skip(1);
            let seq: usize = parts.next().unwrap().parse().unwrap();
            let hash = parts.next().unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(&records[seq])),
                hash,
                "record {seq} lost"
            );
        }
    }
}

#[test]
fn hub_made_credential_is_activated_only_for_our_ak() {
    use dosegate_core::attest::credential::{check_activation, check_ak_public, make_credential};
    let Some(swtpm) = Swtpm::start() else { return };
    let tpm = swtpm.open();
    let ek = tpm.ek_public().unwrap();
    let area = tpm.ak_public_area().unwrap();
    // The hub checks the AK's attributes and computes its name from the public area.
    let checked = check_ak_public(&area, &tpm.ak_public()).unwrap();
    let credential = Sha256::digest(b"hub enrollment secret");
    let challenge = make_credential(&ek, checked.name(), &credential, &[0x42; 32]).unwrap();
    let recovered = tpm
        .activate_credential(&challenge.id_object, &challenge.encrypted_secret)
        .unwrap();
    check_activation(&credential, &recovered).unwrap();

    // Bound to another name (e.g. a software key posing as the AK): the TPM refuses.
    let mut other_name = checked.name().to_vec();
    other_name[5] ^= 1;
    let wrong = make_credential(&ek, &other_name, &credential, &[0x43; 32]).unwrap();
    assert!(
        tpm.activate_credential(&wrong.id_object, &wrong.encrypted_secret)
            .is_err()
    );
    // The event key is not an AK: unrestricted, so the hub refuses its public area.
    assert!(check_ak_public(&area, &tpm.event_public()).is_err());
}

#[test]
fn the_tls_key_is_a_third_key_that_signs_as_itself_and_survives_a_restart() {
    let Some(mut swtpm) = Swtpm::start() else {
        return;
    };
    let tpm = std::sync::Arc::new(swtpm.open());
    let tls = tpm.tls_public();
    assert_ne!(tls, tpm.event_public());
    assert_ne!(tls, tpm.ak_public());
    let signer = tpm.tls_signer();
    assert_eq!(signer.public_key(), tls);
    let sig = signer.sign(b"TLS 1.3, client CertificateVerify").unwrap();
    assert!(tls.verify(b"TLS 1.3, client CertificateVerify", &sig));
    assert!(
        !tpm.event_public()
            .verify(b"TLS 1.3, client CertificateVerify", &sig)
    );
    drop(signer);
    drop(tpm);
    swtpm.restart();
    assert_eq!(swtpm.open().tls_public(), tls, "the TLS key is persistent");
}

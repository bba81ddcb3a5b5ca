//! The whole job cycle as `make demo` runs it (scripts/demo.sh, in a temporary directory): a real
//! mosquitto with the generated PKI and ACL, swtpm as the gateway's TPM, the printer simulator on
//! a pty, the spectrometer simulator serving real NIR spectra, `dosegate run`, and the hub tool.
//!
//! Checked from the files the cycle leaves: each job's final report, the hub's stored copy of the
//! gateway's ledger (every record exactly once, byte for byte) and its receipt covering the last
//! record. The crash variant SIGKILLs the gateway mid-print and restarts it.

#![cfg(all(feature = "real-mosquitto", feature = "real-swtpm"))]

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Whether everything the demo needs is here; with DOSEGATE_REQUIRE_REAL set, a missing piece
/// fails the test instead of skipping it.
fn ready(test: &str) -> bool {
    let missing: Vec<String> = ["mosquitto", "swtpm"]
        .iter()
        .filter(|b| {
            !["/usr/sbin", "/usr/bin", "/sbin", "/bin"]
                .iter()
                .any(|d| Path::new(d).join(b).exists())
        })
        .map(|b| (*b).to_owned())
        .chain(
            [
                "target/release/dosegate",
                "target/release/dosegate-hub",
                "target/release/dosegate-printer-sim",
                "target/release/dosegate-spectrometer-sim",
                "../shared/data/pat/dyrby2002_nir_cal.csv",
            ]
            .iter()
            .filter(|p| !repo().join(p).exists())
            .map(|p| (*p).to_owned()),
        )
        .collect();
    if missing.is_empty() {
        return true;
    }
    assert!(
        std::env::var_os("DOSEGATE_REQUIRE_REAL").is_none(),
        "{test}: missing {missing:?} (build the workspace in release and install the test dependencies)"
    );
    eprintln!("{test}: skipped, missing {missing:?}");
    false
}

struct Cycle {
    dir: tempfile::TempDir,
    reports: Vec<Value>,
    hub: Value,
    stdout: String,
}

fn run_demo(variant: Option<&str>) -> Cycle {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/demo.sh"))
        .env("DEMO_DIR", dir.path().join("demo"))
        .env("DEMO_TIMEOUT_S", "120");
    if let Some(v) = variant {
        cmd.env(v, "1");
    }
    let out = cmd.output().expect("run scripts/demo.sh");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "demo failed: {}\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let demo = dir.path().join("demo");
    let log = std::fs::read_to_string(demo.join("gateway.log")).unwrap();
    let reports = log
        .lines()
        .filter(|l| l.contains("\"job done\""))
        .map(|l| {
            let line: Value = serde_json::from_str(l).unwrap();
            serde_json::from_str(line["fields"]["report"].as_str().unwrap()).unwrap()
        })
        .collect();
    let hub =
        serde_json::from_slice(&std::fs::read(demo.join("hub-status.json")).unwrap()).unwrap();
    Cycle {
        dir,
        reports,
        hub,
        stdout,
    }
}

/// Every record of the gateway's ledger is stored at the hub exactly once, byte for byte, the
/// hub's copy verifies, and its receipt covers the last one.
fn assert_delivered_exactly_once(c: &Cycle) {
    let demo = c.dir.path().join("demo");
    let records = dosegate::store::read_dir(&demo.join("state/ledger"))
        .unwrap()
        .records;
    let events = demo.join("hub/fleet/spoke-01/events");
    let mut stored: Vec<PathBuf> = std::fs::read_dir(&events)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    stored.sort();
    assert_eq!(stored.len(), records.len(), "hub holds each record once");
    for (seq, bytes) in records.iter().enumerate() {
        let copy = std::fs::read(events.join(format!("{seq:020}.cose"))).unwrap();
        assert_eq!(&copy, bytes, "record {seq} byte for byte");
    }
    let gw = &c.hub[0];
    assert_eq!(gw["gateway"], "spoke-01");
    assert_eq!(gw["stored"], records.len() as u64);
    assert_eq!(gw["covered_seq"], records.len() as u64 - 1, "{}", c.hub);
    assert!(gw["failed"].is_null(), "hub's copy verifies: {}", c.hub);
}

fn assert_nothing_left_running(c: &Cycle) {
    let needle = c.dir.path().to_string_lossy().into_owned();
    let out = Command::new("pgrep")
        .args(["-f", &needle])
        .output()
        .unwrap();
    assert!(
        out.stdout.is_empty(),
        "processes left running: {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_hub_signed_job_is_verified_printed_measured_released_and_receipted_and_forgeries_refused() {
    if !ready("job_cycle") {
        return;
    }
    let c = run_demo(None);
    assert_eq!(c.reports.len(), 3, "{:?}", c.reports);
    let released = &c.reports[0];
    assert_eq!(released["stage"], "released", "{released}");
    let dose = released["doses_mg"][0].as_f64().unwrap();
    assert!(
        (9.25..=10.75).contains(&dose),
        "dose {dose} within ±7.5 % of 10 mg"
    );
    assert_eq!(c.reports[1]["stage"], "rejected");
    assert_eq!(c.reports[1]["codes"][0], "JOB_REPLAYED");
    assert_eq!(c.reports[2]["stage"], "rejected");
    assert_eq!(
        c.reports[2]["codes"][0], "JOB_BAD_SIGNATURE",
        "{}",
        c.reports[2]
    );
    assert!(c.stdout.contains("summary"), "{}", c.stdout);
    // The printer executed what the job verified: one executed move per G0/G1 of the G-code.
    let demo = c.dir.path().join("demo");
    let executed = std::fs::read_to_string(demo.join("printer-executed.gcode")).unwrap();
    let gcode = std::fs::read_to_string(
        repo().join("gateway/core/tests/data/gcode/slicer/hctz-cylinder-7.2x2.6.gcode"),
    )
    .unwrap();
    let moves = gcode
        .lines()
        .filter(|l| l.starts_with("G1 ") || l.starts_with("G0 "))
        .count();
    assert_eq!(executed.lines().count(), moves, "every move exactly once");
    let status: Value =
        serde_json::from_slice(&std::fs::read(demo.join("state/status.json")).unwrap()).unwrap();
    assert_eq!(status["fleet_configured"], true, "{status}");
    assert_eq!(status["broker_connected"], true, "{status}");
    assert_eq!(status["printer_link_up"], true, "{status}");
    assert_delivered_exactly_once(&c);
    assert_nothing_left_running(&c);
}

#[test]
fn a_gateway_killed_mid_print_aborts_the_job_on_restart_and_loses_no_event() {
    if !ready("job_cycle_crash") {
        return;
    }
    let c = run_demo(Some("DEMO_KILL_MID_JOB"));
    let first = &c.reports[0];
    assert_eq!(first["stage"], "aborted", "{first}");
    assert_eq!(first["codes"][0], "gateway-restarted");
    assert_eq!(
        c.reports[1]["codes"][0], "JOB_REPLAYED",
        "never printed again"
    );
    assert_delivered_exactly_once(&c);
    assert_nothing_left_running(&c);
}

#[test]
fn a_hub_abort_stops_the_print_and_is_recorded() {
    if !ready("job_cycle_abort") {
        return;
    }
    let c = run_demo(Some("DEMO_ABORT_MID_JOB"));
    let first = &c.reports[0];
    assert_eq!(first["stage"], "aborted", "{first}");
    assert_eq!(first["codes"][0], "stopped");
    let demo = c.dir.path().join("demo");
    let executed = std::fs::read_to_string(demo.join("printer-executed.gcode")).unwrap();
    assert!(executed.lines().count() < 1305, "the print stopped early");
    assert_delivered_exactly_once(&c);
    assert_nothing_left_running(&c);
}

#[test]
fn hub_metadata_a_policy_is_applied_measured_and_used_and_revocations_are_enforced() {
    use sha2::{Digest as _, Sha256};
    if !ready("job_cycle_fleet") {
        return;
    }
    let c = run_demo(Some("DEMO_FLEET"));
    assert_eq!(c.reports.len(), 5, "{:?}", c.reports);
    // The job was signed against version 2 of the policy, which only the hub's bundle brought.
    let released = &c.reports[0];
    assert_eq!(released["stage"], "released", "{released}");
    let demo = c.dir.path().join("demo");
    let v2 = std::fs::read(demo.join("policy-v2.toml")).unwrap();
    let v2_sha = hex::encode(Sha256::digest(&v2));
    let attest: Value =
        serde_json::from_slice(&std::fs::read(demo.join("attest.json")).unwrap()).unwrap();
    assert_eq!(attest["verdict"], "trusted", "{attest}");
    assert!(
        attest["measurements"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["what"] == "policy" && m["sha256"] == v2_sha.as_str()),
        "the applied policy bundle is measured and quoted: {attest}"
    );
    let revoked = &c.reports[3];
    assert_eq!(revoked["stage"], "rejected", "{revoked}");
    assert_eq!(revoked["codes"][0], "revoked", "{revoked}");
    let stale = &c.reports[4];
    assert_eq!(stale["stage"], "rejected", "{stale}");
    assert_eq!(stale["codes"][0], "revocation-expired", "{stale}");
    assert_delivered_exactly_once(&c);
    assert_nothing_left_running(&c);
}

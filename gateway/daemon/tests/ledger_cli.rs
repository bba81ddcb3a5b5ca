//! `dosegate ledger verify DIR [--trust FILE] [--json]` as written: exit 0 when the ledger
//! verifies, 1 naming the first bad record, 2 on usage or I/O errors.

use std::path::Path;
use std::process::{Command, Output};

const BIN: &str = env!("CARGO_BIN_EXE_dosegate");

fn run(args: &[&str]) -> Output {
    Command::new(BIN).args(args).output().expect("run dosegate")
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)))
}

/// A dev ledger of three jobs, and its trust file.
fn setup(root: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let dir = root.join("ledger");
    let key = root.join("dev.key");
    let out = run(&[
        "ledger",
        "exercise",
        path(&dir),
        "--gateway-id",
        "cli-gw",
        "--jobs",
        "3",
        "--insecure-dev-key",
        path(&key),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&[
        "ledger",
        "trust-file",
        "--gateway-id",
        "cli-gw",
        "--insecure-dev-key",
        path(&key),
    ]);
    assert!(out.status.success());
    let trust = root.join("trust.toml");
    std::fs::write(&trust, &out.stdout).unwrap();
    (dir, trust)
}

#[test]
fn verify_accepts_a_good_ledger_and_reports_insecure_records() {
    let root = tempfile::tempdir().unwrap();
    let (dir, trust) = setup(root.path());
    let out = run(&[
        "ledger",
        "verify",
        path(&dir),
        "--trust",
        path(&trust),
        "--allow-insecure",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["records"], 23); // start, insecure-mode, 3 × (6 events + checkpoint)
    assert_eq!(v["insecure_records"], 23);
    assert_eq!(v["keys_pinned"], true);
    // Without --allow-insecure the same ledger does not verify, at its first record.
    let out = run(&["ledger", "verify", path(&dir), "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["code"], "insecure");
    assert_eq!(json(&out)["index"], 0);
}

#[test]
fn verify_names_the_first_edited_record() {
    let root = tempfile::tempdir().unwrap();
    let (dir, trust) = setup(root.path());
    let seg = dir.join("ledger-00000000.dgl");
    let mut bytes = std::fs::read(&seg).unwrap();
    // Find record 5's frame and flip a byte in its middle.
    let mut offset = 0;
    for _ in 0..5 {
        let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
        offset += 4 + len;
    }
    let len = u32::from_be_bytes(bytes[offset..offset + 4].try_into().unwrap()) as usize;
    bytes[offset + 4 + len / 2] ^= 0x20;
    std::fs::write(&seg, &bytes).unwrap();
    let out = run(&[
        "ledger",
        "verify",
        path(&dir),
        "--trust",
        path(&trust),
        "--allow-insecure",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["index"], 5, "{v}");
    // The human report names it too.
    let out = run(&["ledger", "verify", path(&dir), "--allow-insecure"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("record 5"));
}

#[test]
fn verify_refuses_a_ledger_under_another_gateways_trust() {
    let root = tempfile::tempdir().unwrap();
    let (dir, _) = setup(root.path());
    let other = tempfile::tempdir().unwrap();
    let (_, other_trust) = setup(other.path());
    let out = run(&[
        "ledger",
        "verify",
        path(&dir),
        "--trust",
        path(&other_trust),
        "--allow-insecure",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["code"], "key-changed");
    assert_eq!(json(&out)["index"], 0);
}

#[test]
fn verify_reports_a_torn_tail_until_recovered() {
    let root = tempfile::tempdir().unwrap();
    let (dir, trust) = setup(root.path());
    let seg = dir.join("ledger-00000000.dgl");
    let mut bytes = std::fs::read(&seg).unwrap();
    bytes.truncate(bytes.len() - 7);
    std::fs::write(&seg, &bytes).unwrap();
    let out = run(&["ledger", "verify", path(&dir), "--allow-insecure", "--json"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["code"], "truncated");
    assert_eq!(json(&out)["index"], 22);
    assert!(run(&["ledger", "recover", path(&dir)]).status.success());
    let out = run(&[
        "ledger",
        "verify",
        path(&dir),
        "--trust",
        path(&trust),
        "--allow-insecure",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["records"], 22);
}

#[test]
fn usage_and_io_errors_exit_2_without_a_panic() {
    let out = run(&["ledger", "verify", "/nonexistent/ledger"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    let root = tempfile::tempdir().unwrap();
    let bad_trust = root.path().join("t.toml");
    std::fs::write(&bad_trust, "event_key = \"zz\"").unwrap();
    let out = run(&[
        "ledger",
        "verify",
        path(root.path()),
        "--trust",
        path(&bad_trust),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["ledger", "exercise", path(root.path()), "--gateway-id", "x"]);
    assert_eq!(out.status.code(), Some(2), "no identity: fail closed");
}

//! Crash tests: the ledger writer is killed with SIGKILL at ≥ 1 000 random points, spread over
//! time (after 0–14 returned appends plus 0–4 ms, so before the first append, inside a frame,
//! between write and fsync, and between appends) and over bytes (each frame written in chunks of
//! 1, 2, 3, 16, 64 or 512 bytes, or whole, so kills land inside frames as a power cut would). After each kill the ledger is recovered as the daemon does at start, and must
//! verify and hold every record whose append had returned (the writer prints `durable SEQ HASH`
//! only after the fsync'd append returned).
//!
//! Runs use the insecure software signer: the property under test is the store's durability and
//! recovery, which do not depend on who signs, and a software signature keeps 1 000 runs within
//! about a minute on 2 cores. The swtpm crash subset (real TPM signatures and counter) is in
//! `tpm_swtpm.rs` behind the `real-swtpm` feature.
//!
//! `DOSEGATE_CRASH_RUNS` overrides the number of runs (default 1 000), `DOSEGATE_CRASH_SEED` the seed.

use std::io::{BufRead as _, BufReader, Read as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use dosegate::store;
use dosegate_core::ledger::LedgerTrust;
use dosegate_core::ledger::verify::verify_records;
use sha2::{Digest, Sha256};

const BIN: &str = env!("CARGO_BIN_EXE_dosegate");
/// Kills per ledger directory (later writers recover what earlier ones left).
const KILLS_PER_DIR: u64 = 10;

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// One kill: start a writer, kill it after `delay_us`, recover, check. Returns the torn bytes
/// recovery dropped.
fn one_run(
    dir: &Path,
    key: &Path,
    after_lines: u64,
    delay_us: u64,
    chunk: Option<usize>,
) -> (u64, u64) {
    let mut cmd = Command::new(BIN);
    cmd.args(["ledger", "exercise"])
        .arg(dir)
        .args([
            "--gateway-id",
            "crash-gw",
            "--jobs",
            "100000",
            "--insecure-dev-key",
        ])
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    if let Some(c) = chunk {
        cmd.args(["--chunk", &c.to_string()]);
    }
    let mut child = cmd.spawn().expect("spawn writer");
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut out = String::new();
    for _ in 0..after_lines {
        if stdout.read_line(&mut out).unwrap() == 0 {
            break;
        }
    }
    std::thread::sleep(Duration::from_micros(delay_us));
    child.kill().expect("SIGKILL writer"); // Child::kill sends SIGKILL on Unix
    stdout.read_to_string(&mut out).unwrap();
    let _ = child.wait();

    let (_, records, recovery) = store::Store::open(
        dir,
        store::DEFAULT_SEGMENT_BYTES,
        store::WritePattern::Whole,
    )
    .unwrap_or_else(|e| panic!("recovery failed in {}: {e}", dir.display()));
    let trust = LedgerTrust {
        gateway_id: Some("crash-gw".into()),
        allow_insecure: true,
        ..LedgerTrust::default()
    };
    verify_records(records.iter().map(Vec::as_slice), trust).unwrap_or_else(|e| {
        panic!(
            "ledger in {} does not verify after a kill: {e}",
            dir.display()
        )
    });
    for line in out.lines() {
        let mut parts = line.split_whitespace();
        assert_eq!(parts.next(), Some("durable"), "unexpected output {line:?}");
        let seq: usize = parts.next().unwrap().parse().unwrap();
        let hash = parts.next().unwrap();
        let record = records.get(seq).unwrap_or_else(|| {
            panic!(
                "record {seq} returned as durable but lost ({})",
                dir.display()
            )
        });
        assert_eq!(
            hex::encode(Sha256::digest(record)),
            hash,
            "record {seq} changed"
        );
    }
    (recovery.truncated_bytes, out.lines().count() as u64)
}

#[test]
fn writer_killed_at_random_points_never_loses_a_returned_append() {
    let runs: u64 = std::env::var("DOSEGATE_CRASH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let seed: u64 = std::env::var("DOSEGATE_CRASH_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| {
            let mut b = [0u8; 8];
            rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut b);
            u64::from_le_bytes(b) | 1
        });
    eprintln!("crash test: {runs} kills, DOSEGATE_CRASH_SEED={seed}");
    let root = tempfile::tempdir().unwrap();
    let key = root.path().join("dev.key");
    // Create the key once, before runs race to create it.
    let status = Command::new(BIN)
        .args(["ledger", "exercise"])
        .arg(root.path().join("warmup"))
        .args([
            "--gateway-id",
            "crash-gw",
            "--jobs",
            "1",
            "--insecure-dev-key",
        ])
        .arg(&key)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());

    let torn_runs = AtomicU64::new(0);
    let durable_total = AtomicU64::new(0);
    let workers: u64 = 2;
    let dirs = runs.div_ceil(KILLS_PER_DIR);
    std::thread::scope(|s| {
        for w in 0..workers {
            let (root, key) = (root.path(), &key);
            let (torn_runs, durable_total) = (&torn_runs, &durable_total);
            s.spawn(move || {
                let mut rng = Rng(seed ^ (w + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15));
                for d in (w..dirs).step_by(usize::try_from(workers).unwrap()) {
                    let dir = root.join(format!("ledger-{d}"));
                    for k in 0..KILLS_PER_DIR {
                        if d * KILLS_PER_DIR + k >= runs {
                            break;
                        }
                        // Kill after 0–14 returned appends plus 0–4 ms: before the first
                        // append, inside frames, between write and fsync, between appends.
                        let after = rng.below(15);
                        let delay = rng.below(4_000);
                        let chunk = [
                            Some(1),
                            Some(1),
                            Some(2),
                            Some(3),
                            Some(16),
                            Some(64),
                            Some(512),
                            None,
                        ][usize::try_from(rng.below(8)).unwrap()];
                        let (torn, durable) = one_run(&dir, key, after, delay, chunk);
                        if torn > 0 {
                            torn_runs.fetch_add(1, Ordering::Relaxed);
                        }
                        durable_total.fetch_add(durable, Ordering::Relaxed);
                    }
                }
            });
        }
    });
    let torn = torn_runs.load(Ordering::Relaxed);
    let durable = durable_total.load(Ordering::Relaxed);
    eprintln!(
        "crash test: {torn} of {runs} kills tore a frame that recovery dropped; \
         {durable} returned appends checked"
    );
    // The test must actually tear frames, or it proves nothing about recovery.
    assert!(
        runs < 500 || torn >= 5,
        "only {torn} torn frames in {runs} kills"
    );
}

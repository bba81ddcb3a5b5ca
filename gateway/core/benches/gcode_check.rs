//! Throughput of the whole program check (parse + virtual print + policy + SHA-256) on one core,
//! side by side with the `gcode` crate's parser on the same bytes in the same run.
//!
//! ```text
//! cargo bench -p dosegate-core --bench gcode_check -- FILE.gcode POLICY.toml RX.toml
//! ```
//!
//! `scripts/bench.sh` makes a large real-slicer file and runs this (and OctoPrint's analysis);
//! see BENCHMARKS.md. The file is read into memory first, so the figures are CPU throughput.

use std::hint::black_box;
use std::time::{Duration, Instant};

use dosegate_core::gcode::Parser;
use dosegate_core::policy::{Policy, ProgramChecker};
use dosegate_core::prescription::Prescription;

const CHUNK: usize = 256 * 1024;
const ROUNDS: u32 = 5;

/// CPU time of this thread (user + system), from `/proc/thread-self/stat` (10 ms ticks).
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<u64> = after
        .split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect();
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Best wall time and mean CPU time over `ROUNDS` runs (the mean, because CPU time comes in
/// 10 ms ticks). On a shared machine the wall time includes waiting for a core; the CPU time
/// does not.
fn best<F: FnMut() -> u64>(mut f: F) -> (Duration, Duration, u64) {
    let mut wall = Duration::MAX;
    let mut out = 0;
    let c0 = cpu_time();
    for _ in 0..ROUNDS {
        let t = Instant::now();
        out = black_box(f());
        wall = wall.min(t.elapsed());
    }
    let cpu = (cpu_time().saturating_sub(c0) / ROUNDS).max(Duration::from_millis(1));
    (wall, cpu, out)
}

fn mb_s(bytes: usize, d: Duration) -> f64 {
    bytes as f64 / 1e6 / d.as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let [file, policy, rx] = args.as_slice() else {
        eprintln!("usage: cargo bench -p dosegate-core --bench gcode_check -- FILE POLICY RX");
        return;
    };
    let data = std::fs::read(file).expect("read G-code");
    let policy = Policy::from_toml(&std::fs::read_to_string(policy).expect("read policy"))
        .expect("valid policy");
    let rx = Prescription::from_toml(&std::fs::read_to_string(rx).expect("read prescription"))
        .expect("valid prescription");
    let text = std::str::from_utf8(&data).expect("UTF-8 G-code");
    println!("file: {file} ({:.1} MB)", data.len() as f64 / 1e6);

    let (check_t, check_cpu, reasons) = best(|| {
        let mut c = ProgramChecker::new(&policy, &rx);
        for chunk in data.chunks(CHUNK) {
            c.feed(chunk);
        }
        let (report, _) = c.finish();
        report.reasons.len() as u64 + report.analysis.commands
    });
    let (parse_t, parse_cpu, commands) = best(|| {
        let mut p = Parser::new();
        let mut n = 0u64;
        for chunk in data.chunks(CHUNK) {
            p.feed(chunk, |_, r| n += u64::from(r.is_ok()));
        }
        n
    });
    let (sha_t, sha_cpu, _) = best(|| {
        use sha2::Digest as _;
        u64::from(sha2::Sha256::digest(&data)[0])
    });
    let (peer_t, peer_cpu, blocks) = best(|| match gcode::parse(text) {
        Ok(p) => p.blocks.len() as u64,
        Err(_) => 0,
    });

    let n = data.len();
    println!("MB/s by wall time and by CPU time (one thread):");
    println!(
        "dosegate check (parse+analyse+policy+sha256): {:8.1} wall {:8.1} cpu  ({reasons} commands+reasons)",
        mb_s(n, check_t),
        mb_s(n, check_cpu)
    );
    println!(
        "dosegate parse only:                         {:8.1} wall {:8.1} cpu  ({commands} commands)",
        mb_s(n, parse_t),
        mb_s(n, parse_cpu)
    );
    println!(
        "sha2 SHA-256 only:                           {:8.1} wall {:8.1} cpu",
        mb_s(n, sha_t),
        mb_s(n, sha_cpu)
    );
    println!(
        "gcode 0.7 parse (peer):                      {:8.1} wall {:8.1} cpu  ({blocks} blocks)",
        mb_s(n, peer_t),
        mb_s(n, peer_cpu)
    );
    println!(
        "ratio check / gcode-crate parse:             {:8.2}x wall {:8.2}x cpu",
        mb_s(n, check_t) / mb_s(n, peer_t),
        mb_s(n, check_cpu) / mb_s(n, peer_cpu)
    );
}

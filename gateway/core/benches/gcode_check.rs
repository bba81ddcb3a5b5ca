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
const ROUNDS: usize = 3;

fn best<F: FnMut() -> u64>(mut f: F) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut out = 0;
    for _ in 0..ROUNDS {
        let t = Instant::now();
        out = black_box(f());
        best = best.min(t.elapsed());
    }
    (best, out)
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

    let (check_t, reasons) = best(|| {
        let mut c = ProgramChecker::new(&policy, &rx);
        for chunk in data.chunks(CHUNK) {
            c.feed(chunk);
        }
        let (report, _) = c.finish();
        report.reasons.len() as u64 + report.analysis.commands
    });
    let (parse_t, commands) = best(|| {
        let mut p = Parser::new();
        let mut n = 0u64;
        for chunk in data.chunks(CHUNK) {
            p.feed(chunk, |_, r| n += u64::from(r.is_ok()));
        }
        n
    });
    let (sha_t, _) = best(|| {
        use sha2::Digest as _;
        u64::from(sha2::Sha256::digest(&data)[0])
    });
    let (peer_t, blocks) = best(|| match gcode::parse(text) {
        Ok(p) => p.blocks.len() as u64,
        Err(_) => 0,
    });

    let ours = mb_s(data.len(), check_t);
    let peer = mb_s(data.len(), peer_t);
    println!(
        "dosegate check (parse+analyse+policy+sha256): {ours:8.1} MB/s  ({reasons} commands+reasons)"
    );
    println!(
        "dosegate parse only:                         {:8.1} MB/s  ({commands} commands)",
        mb_s(data.len(), parse_t)
    );
    println!(
        "sha2 SHA-256 only:                           {:8.1} MB/s",
        mb_s(data.len(), sha_t)
    );
    println!("gcode 0.7 parse (peer):                      {peer:8.1} MB/s  ({blocks} blocks)");
    println!(
        "ratio check / gcode-crate parse:             {:8.2}x",
        ours / peer
    );
}

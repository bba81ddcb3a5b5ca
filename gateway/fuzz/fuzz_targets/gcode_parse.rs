//! Any bytes as a G-code program, fed in chunks whose size the input chooses: never a panic;
//! every accepted command's canonical text parses back to itself; chunking changes nothing; and
//! the whole check (virtual print + FDM policy) runs to a report.
#![no_main]

use dosegate_core::gcode::Parser;
use dosegate_core::gcode::parse::parse_line;
use dosegate_core::policy::{self, Policy};
use dosegate_core::prescription::Prescription;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

const POLICY: &str = include_str!("../../../policies/fdm-hctz-printlet.toml");
const RX: &str = include_str!("../../core/tests/data/gcode/rx-corpus.toml");

fn run(data: &[u8], chunk: usize) -> Vec<(u32, Result<String, String>)> {
    let mut out = Vec::new();
    let mut p = Parser::new();
    for c in data.chunks(chunk.max(1)) {
        p.feed(c, |n, r| out.push((n, r.map(|c| c.canonical()).map_err(|e| e.to_string()))));
    }
    p.finish(|n, r| out.push((n, r.map(|c| c.canonical()).map_err(|e| e.to_string()))));
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&first, program)) = data.split_first() else {
        return;
    };
    let whole = run(program, program.len());
    assert_eq!(run(program, usize::from(first % 17) + 1), whole);
    for (_, r) in &whole {
        if let Ok(text) = r {
            let again = parse_line(text.as_bytes(), 1)
                .expect("canonical text parses")
                .expect("canonical text is a command");
            assert_eq!(&again.canonical(), text);
        }
    }
    // Parsed once: the TOML parsing would otherwise dominate every run.
    static LOADED: OnceLock<(Policy, Prescription)> = OnceLock::new();
    let (policy, rx) = LOADED.get_or_init(|| {
        (
            Policy::from_toml(POLICY).expect("shipped policy"),
            Prescription::from_toml(RX).expect("corpus prescription"),
        )
    });
    let report = policy::check(policy, rx, program);
    assert!(report.reasons.len() <= policy::MAX_REASONS);
});

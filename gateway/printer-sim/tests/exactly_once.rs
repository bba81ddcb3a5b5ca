//! Property: under any schedule of link faults the protocol can detect, the commands the printer
//! executed are exactly the program (no loss, no repeat), or the job ended aborted with a recorded
//! reason and what ran is a prefix of the program — never a silent difference.
//!
//! Detectable faults: corrupted bytes (an odd number of flipped bits always changes the XOR),
//! rejected lines, omitted oks, busy spells, disconnects, with the window keeping within the
//! receive buffer. Not in this property: bytes *dropped* inside a line. Marlin's 8-bit XOR
//! accepts a merged line with probability about 1/256 per drop (docs/printer.md, "Known
//! limits"); `streaming.rs` has drop and overflow cases and the checkpoints catch merged moves
//! that change the position.

mod common;

use std::time::Duration;

use common::{normal, printlet, run};
use dosegate_core::stream::StreamConfig;
use dosegate_printer_sim::{Fault, Faults, SimConfig};
use proptest::prelude::*;

fn fault() -> impl Strategy<Value = Fault> {
    prop_oneof![
        4 => Just(Fault::Corrupt),
        4 => Just(Fault::ForceResend),
        3 => Just(Fault::OmitOk),
        1 => Just(Fault::Busy),
        1 => Just(Fault::Disconnect),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn executed_log_equals_program_or_job_aborts_with_reason(
        moves in 20usize..400,
        schedule in proptest::collection::btree_map(1u64..500, fault(), 0..25),
        resend_per_mille in 0u32..80,
        corrupt_per_mille in 0u32..80,
        advanced_ok in any::<bool>(),
        latency_ms in 0u64..6,
        max_lines in 1usize..12,
        seed in any::<u64>(),
    ) {
        let prog = printlet(moves);
        let sim = SimConfig {
            advanced_ok,
            faults: Faults { seed, resend_per_mille, corrupt_per_mille, schedule, ..Faults::default() },
            ..SimConfig::default()
        };
        let cfg = StreamConfig {
            max_lines_in_flight: max_lines,
            max_bytes_in_flight: 127,
            ack_timeout: Duration::from_secs(3),
            ..StreamConfig::default()
        };
        let r = run(&prog, cfg, sim, Duration::from_millis(latency_ms));
        let ran = r.executed_program();
        let prog = normal(&prog);
        match &r.outcome {
            Ok(summary) => {
                prop_assert_eq!(&ran, &prog);
                prop_assert_eq!(summary.commands, prog.len());
            }
            Err(reason) => {
                prop_assert!(!reason.code().is_empty());
                prop_assert!(ran.len() <= prog.len());
                prop_assert_eq!(&ran[..], &prog[..ran.len()], "aborted ({:?}) after a difference", reason);
            }
        }
    }
}

//! Any bytes from the printer, in any chunking and timing, through the streamer's whole life
//! (handshake, identification, streaming), and any text offered as a canonical command: never a
//! panic, and the streamer always ends or keeps a deadline.
#![no_main]

use std::time::Duration;

use dosegate_core::stream::{
    CanonicalCommand, StreamCommand, StreamConfig, StreamProgram, Streamer, parse_reply,
};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = CanonicalCommand::new(text);
        for line in text.lines() {
            let _ = parse_reply(line);
        }
    }
    let commands = (0..20)
        .map(|i| StreamCommand {
            source_line: i + 1,
            command: CanonicalCommand::new(&format!("G1 X{i} E{i}")).expect("canonical"),
            after: None,
        })
        .collect();
    let program = StreamProgram::unverified(commands).expect("non-empty");
    let mut s = Streamer::new(program, StreamConfig::default(), Duration::ZERO);
    let mut now = Duration::ZERO;
    // The first byte of each chunk sets its length and the time step before it.
    let mut rest = data;
    while let Some((&ctl, tail)) = rest.split_first() {
        let len = usize::from(ctl & 0x3f).min(tail.len());
        let (chunk, next) = tail.split_at(len);
        now += Duration::from_millis(u64::from(ctl >> 6) * 700);
        s.handle_timeout(now);
        s.handle_input(chunk, now);
        while s.poll_transmit().is_some() {}
        while s.poll_event().is_some() {}
        rest = next;
    }
    if s.outcome().is_none() {
        assert!(s.poll_timeout().is_some(), "a live streamer without a deadline could hang");
    }
});

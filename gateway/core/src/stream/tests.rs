//! Unit tests of the stream module: framing, replies, capabilities, the monitor, and the streamer
//! against scripted firmware answers (the simulator's tests cover whole prints).

use std::time::Duration;

use proptest::prelude::*;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

// ---------------------------------------------------------------- framing

#[test]
fn frames_a_command_with_marlins_checksum() {
    let cmd = CanonicalCommand::new("M110 S1").unwrap();
    assert_eq!(checksum(b"N0 M110 N0"), 125);
    let f = String::from_utf8(frame(7, &cmd)).unwrap();
    let (head, cs) = f.trim_end().rsplit_once('*').unwrap();
    assert_eq!(cs.parse::<u8>().unwrap(), checksum(head.as_bytes()));
    assert!(head.starts_with("N7 M110"));
    assert!(f.ends_with('\n'));
}

#[test]
fn refuses_non_canonical_commands() {
    for bad in [
        "",
        "g1 X1",
        "G1 X1 ; comment",
        "G1 X1*12",
        "N5 G1 X1",
        "G1  X1",
        " G1",
        "G1 (x) X1",
        "G1 Xé",
        "X1 G1",
    ] {
        assert!(CanonicalCommand::new(bad).is_err(), "{bad:?} accepted");
    }
    let long = format!("G1 X{}", "1".repeat(MAX_COMMAND_LEN));
    assert!(matches!(
        CanonicalCommand::new(&long),
        Err(StreamError::NotCanonical {
            reason: "longer than 80 bytes",
            ..
        })
    ));
    assert_eq!(
        CanonicalCommand::new("M104 S190").unwrap().param('S'),
        Some(190.0)
    );
}

proptest! {
    #[test]
    fn frames_keep_their_checksum(n in 0u32..10_000_000, x in -500.0f64..500.0, e in 0.0f64..5000.0, f in 1u32..20000) {
        let cmd = CanonicalCommand::new(&format!("G1 X{x:.3} E{e:.5} F{f}")).unwrap();
        let bytes = frame(n, &cmd);
        let text = std::str::from_utf8(&bytes[..bytes.len() - 1]).unwrap();
        let (head, cs) = text.rsplit_once('*').unwrap();
        prop_assert_eq!(cs.parse::<u8>().unwrap(), checksum(head.as_bytes()));
        let prefix = format!("N{n} ");
        prop_assert!(head.starts_with(&prefix));
        prop_assert_eq!(read_back(head), words_of(cmd.as_str()));
    }
}

/// The command word and each parameter's letter and value, as Marlin's parser splits a frame's
/// body (`N<n> ` skipped; a parameter is a letter and the `0-9 . + -` characters after it).
fn read_back(head: &str) -> Vec<(char, Option<f64>)> {
    let body = head.split_once(' ').unwrap().1.replace(' ', "");
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(letter) = chars.next() {
        let mut value = String::new();
        while let Some(&c) = chars.peek() {
            if c.is_ascii_digit() || matches!(c, '.' | '-' | '+') {
                value.push(c);
                chars.next();
            } else {
                break;
            }
        }
        out.push((letter, value.parse().ok()));
    }
    out
}

fn words_of(command: &str) -> Vec<(char, Option<f64>)> {
    command
        .split(' ')
        .map(|w| {
            let mut c = w.chars();
            (c.next().unwrap(), c.as_str().parse().ok())
        })
        .collect()
}

#[test]
fn frames_are_compact_and_numbers_shortest_where_marlin_reads_them_the_same() {
    let f = |text: &str| {
        let b = frame(7, &CanonicalCommand::new(text).unwrap());
        let s = String::from_utf8(b).unwrap();
        s.rsplit_once('*').unwrap().0.to_owned()
    };
    // Layouts may add a space where a zero-XOR prefix would otherwise appear.
    let plain = |s: String| s.replace("  ", " ");
    assert_eq!(
        plain(f("G1 X100.20 Y-0.50 E0.0100 F1800")).replace(' ', ""),
        "N7G1X100.2Y-.5E.01F1800"
    );
    assert_eq!(plain(f("G92 E0")).replace(' ', ""), "N7G92E0");
    assert_eq!(plain(f("M104 S190.000")).replace(' ', ""), "N7M104S190");
    // Flags and free text keep their spaces and digits.
    assert_eq!(plain(f("G28 X Y")).trim_end(), "N7 G28 X Y");
    assert_eq!(plain(f("M117 Hello 1.50")).trim_end(), "N7 M117 Hello 1.50");
    // The line number is always followed by a space (newer Marlin skips `N<n>` up to one).
    for text in ["G1 X1", "T0", "M82"] {
        assert!(f(text).starts_with("N7 "), "{text}");
    }
}

fn zero_prefixes(line: &[u8]) -> usize {
    let mut acc = 0u8;
    line[..line.len() - 1]
        .iter()
        .filter(|&&b| {
            acc ^= b;
            acc == 0
        })
        .count()
}

#[test]
fn a_truncated_frame_merged_with_the_next_almost_never_passes_its_checksum() {
    // Plain single-spaced framing leaves a zero-XOR prefix in about one line in seven; choosing
    // one or two spaces per separator halves that. It cannot reach zero: when the XOR after a
    // word is 0x00 or 0x20 every layout has a zero prefix (the 8-bit checksum's limit).
    let (mut plain, mut chosen) = (0, 0);
    let total = 20_000u32;
    for i in 0..total {
        let cmd = CanonicalCommand::new(&format!(
            "G1 X{:.3} Y{:.3} E{:.5} F{}",
            f64::from(i % 997) * 0.173,
            f64::from(i % 331) * 0.29,
            f64::from(i) * 0.01234,
            600 + (i % 7) * 300
        ))
        .unwrap();
        let n = i * 7 + 1;
        let naive = format!("N{n} {cmd}");
        let naive = format!("{naive}*{}\n", checksum(naive.as_bytes()));
        plain += usize::from(zero_prefixes(naive.as_bytes()) > 0);
        chosen += usize::from(zero_prefixes(&frame(n, &cmd)) > 0);
    }
    assert!(plain > 2000, "the hazard is real: {plain} of {total}");
    assert!(
        chosen * 2 < plain,
        "layouts did not help: {chosen} vs {plain} of {total}"
    );
}

// ---------------------------------------------------------------- replies

#[test]
fn parses_marlin_replies() {
    assert_eq!(
        parse_reply("ok N12 P15 B3"),
        Reply::Ok {
            line: Some(12),
            planner_free: Some(15),
            buffer_free: Some(3),
            temperatures: None,
            position: None,
        }
    );
    assert_eq!(parse_reply("Resend: 5"), Reply::Resend(5));
    assert_eq!(parse_reply("rs N6"), Reply::Resend(6));
    assert_eq!(
        parse_reply("Error:checksum mismatch, Last Line: 4"),
        Reply::LineError { last_line: Some(4) }
    );
    assert_eq!(
        parse_reply("Error:Printer halted. kill() called!"),
        Reply::Fatal("Printer halted. kill() called!".into())
    );
    assert_eq!(parse_reply("echo:busy: processing"), Reply::Busy);
    assert_eq!(parse_reply("wait"), Reply::Wait);
    assert_eq!(parse_reply("start"), Reply::Start);
    assert_eq!(
        parse_reply(" T:190.12 /190.00 B:40.00 /40.00 @:0 B@:0"),
        Reply::Temperatures(Temperatures {
            hotend: Some((190.12, 190.0)),
            bed: Some((40.0, 40.0))
        })
    );
    let Reply::Ok {
        temperatures: Some(t),
        line: None,
        ..
    } = parse_reply("ok T:20.0 /0.0 B:21.0 /0.0 @:0 B@:0")
    else {
        panic!("M105 answer not parsed")
    };
    assert_eq!(t.bed, Some((21.0, 0.0)));
    assert_eq!(
        parse_reply("X:1.00 Y:2.00 Z:0.30 E:4.50 Count X:80 Y:160 Z:120"),
        Reply::Position(Position {
            x: 1.0,
            y: 2.0,
            z: 0.3,
            e: 4.5
        })
    );
    assert_eq!(
        parse_reply("X:NaN Y:2 Z:3 E:4"),
        Reply::Text("X:NaN Y:2 Z:3 E:4".into())
    );
}

#[test]
fn reads_capabilities_from_m115() {
    let caps = Capabilities::from_m115(&[
        "FIRMWARE_NAME:Marlin 2.1.2.4 (Jan 1 2026) SOURCE_CODE_URL:github.com/MarlinFirmware/Marlin PROTOCOL_VERSION:1.0",
        "Cap:ADVANCED_OK:1",
        "Cap:AUTOREPORT_TEMP:0",
        "Cap:EMERGENCY_PARSER:1",
    ]);
    assert_eq!(caps.firmware_name, "Marlin 2.1.2.4 (Jan 1 2026)");
    assert!(caps.advanced_ok && caps.emergency_parser && !caps.autoreport_temp);
    assert_ne!(answer_digest(&["a", "b"]), answer_digest(&["a", "c"]));
}

// ---------------------------------------------------------------- monitor

fn limits() -> MonitorLimits {
    MonitorLimits {
        hotend_c: Some((185.0, 195.0)),
        bed_c: None,
        tolerance_c: 2.0,
        grace: ms(3000),
        heatup_timeout: ms(60_000),
        report_timeout: ms(5000),
    }
}

#[test]
fn a_deviation_shorter_than_the_grace_time_is_tolerated() {
    let mut m = TemperatureMonitor::new(limits());
    m.set_point(Heater::Hotend, 190.0, ms(0));
    m.report(Some(190.0), None, ms(1000));
    m.report(Some(199.0), None, ms(2000));
    assert_eq!(m.check(ms(4000)), None);
    m.report(Some(190.0), None, ms(4500));
    assert_eq!(m.check(ms(9000)), None);
}

#[test]
fn a_deviation_longer_than_the_grace_time_aborts_with_evidence() {
    let mut m = TemperatureMonitor::new(limits());
    m.set_point(Heater::Hotend, 190.0, ms(0));
    m.report(Some(190.0), None, ms(1000));
    m.report(Some(180.5), None, ms(2000));
    m.report(Some(180.0), None, ms(4000));
    let Some(AbortReason::TemperatureDeviation {
        heater,
        measured_c,
        min_c,
        lasted_ms,
        ..
    }) = m.check(ms(5001))
    else {
        panic!("no abort")
    };
    assert_eq!(
        (heater, measured_c, min_c, lasted_ms),
        (Heater::Hotend, 180.0, 185.0, 3001)
    );
}

#[test]
fn heat_up_must_finish_in_time_and_cooling_at_the_end_is_not_a_deviation() {
    let mut m = TemperatureMonitor::new(limits());
    m.set_point(Heater::Hotend, 190.0, ms(0));
    m.report(Some(100.0), None, ms(1000));
    assert!(matches!(
        m.check(ms(60_001)),
        Some(AbortReason::HeatupTimeout { .. })
    ));

    let mut m = TemperatureMonitor::new(limits());
    m.set_point(Heater::Hotend, 190.0, ms(0));
    m.report(Some(190.0), None, ms(1000));
    m.set_point(Heater::Hotend, 0.0, ms(2000));
    m.report(Some(120.0), None, ms(3000));
    assert_eq!(m.check(ms(60_000)), None);
}

#[test]
fn silence_while_a_heater_is_watched_aborts() {
    let mut m = TemperatureMonitor::new(limits());
    m.set_point(Heater::Hotend, 190.0, ms(0));
    m.report(Some(190.0), None, ms(1000));
    assert!(matches!(
        m.check(ms(6001)),
        Some(AbortReason::TemperatureReportsStopped { silent_ms: 5001 })
    ));
}

// ---------------------------------------------------------------- streamer, scripted

fn program(n: usize) -> StreamProgram {
    StreamProgram::unverified(
        (0..n)
            .map(|i| StreamCommand {
                source_line: u32::try_from(i + 1).unwrap(),
                command: CanonicalCommand::new(&format!("G1 X{i}")).unwrap(),
                after: None,
            })
            .collect(),
    )
    .unwrap()
}

fn sent(s: &mut Streamer) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(t) = s.poll_transmit() {
        match t {
            Transmit::Line(b) | Transmit::Emergency(b) => {
                out.extend(String::from_utf8(b).unwrap().lines().map(str::to_owned));
            }
            Transmit::ResetBoard => out.push("<reset>".into()),
        }
    }
    out
}

/// A streamer past the handshake and identification, with ADVANCED_OK as given.
fn identified(n: usize, advanced_ok: bool) -> Streamer {
    let mut s = Streamer::new(program(n), StreamConfig::default(), ms(0));
    assert_eq!(sent(&mut s), vec!["N0 M110 N0*125"]);
    s.handle_input(b"ok\n", ms(1));
    assert_eq!(
        sent(&mut s).len(),
        1,
        "one line in flight while identifying"
    );
    let cap = if advanced_ok {
        "Cap:ADVANCED_OK:1"
    } else {
        "Cap:ADVANCED_OK:0"
    };
    s.handle_input(
        format!("FIRMWARE_NAME:Marlin\nCap:AUTOREPORT_TEMP:1\n{cap}\nok\n").as_bytes(),
        ms(2),
    );
    assert_eq!(sent(&mut s).len(), 1);
    let ok = if advanced_ok { "ok N2 P15 B3" } else { "ok" };
    s.handle_input(format!("echo:  M92 X80.00\n{ok}\n").as_bytes(), ms(3));
    // Auto-reporting is switched on before the program starts (as part of connecting).
    let m155 = sent(&mut s);
    assert_eq!(m155.len(), 1, "{m155:?}");
    assert!(m155[0].starts_with("N3 M155"), "{m155:?}");
    let ok = if advanced_ok { "ok N3 P15 B3" } else { "ok" };
    s.handle_input(format!("{ok}\n").as_bytes(), ms(3));
    s
}

#[test]
fn refuses_an_ok_for_a_line_never_sent() {
    let mut s = identified(3, true);
    let lines = sent(&mut s);
    assert!(lines.len() > 1, "window did not open: {lines:?}");
    s.handle_input(b"ok N99 P15 B3\n", ms(4));
    assert!(matches!(
        s.outcome(),
        Some(Err(AbortReason::AckForUnsentLine { line: 99, .. }))
    ));
}

#[test]
fn refuses_a_resend_request_for_an_acknowledged_line() {
    let mut s = identified(10, true);
    let _ = sent(&mut s);
    s.handle_input(b"ok N4 P15 B3\nok N5 P15 B3\n", ms(4));
    s.handle_input(b"Resend: 2\n", ms(5));
    assert!(matches!(
        s.outcome(),
        Some(Err(AbortReason::ResendOutOfWindow { requested: 2, .. }))
    ));
}

#[test]
fn goes_back_to_exactly_the_requested_line_after_quiet() {
    let mut s = identified(10, true);
    let first = sent(&mut s);
    let n5 = first
        .iter()
        .find(|l| l.starts_with("N5 "))
        .cloned()
        .unwrap();
    s.handle_input(
        b"ok N4 P15 B3\nError:checksum mismatch, Last Line: 4\nResend: 5\nok\n",
        ms(4),
    );
    assert!(sent(&mut s).is_empty(), "sent during the quiet period");
    // A stale duplicate request for the same line is absorbed.
    s.handle_input(
        b"Error:Line Number is not Last Line Number+1, Last Line: 4\nResend: 5\nok\n",
        ms(10),
    );
    s.handle_timeout(ms(200));
    let again = sent(&mut s);
    assert_eq!(
        again.first(),
        Some(&n5),
        "did not resend line 5 first: {again:?}"
    );
    assert_eq!(s.progress().resends, 1);
}

#[test]
fn caps_resends_of_one_line() {
    let mut s = identified(10, true);
    let _ = sent(&mut s);
    let mut t = 4;
    for _ in 0..=StreamConfig::default().max_resends_per_line {
        s.handle_input(b"Resend: 5\nok\n", ms(t));
        s.handle_timeout(ms(t + 100));
        let _ = sent(&mut s);
        t += 200;
    }
    assert!(matches!(
        s.outcome(),
        Some(Err(AbortReason::ResendLimitExceeded { line: 5, .. }))
    ));
}

#[test]
fn a_silent_firmware_is_probed_then_given_up() {
    let mut s = identified(10, true);
    let _ = sent(&mut s);
    let mut t = 4;
    for _ in 0..3 {
        t += 10_000;
        s.handle_timeout(ms(t));
        assert!(!sent(&mut s).is_empty(), "no probe");
    }
    s.handle_timeout(ms(t + 10_000));
    assert!(matches!(
        s.outcome(),
        Some(Err(AbortReason::Unresponsive { probes: 3, .. }))
    ));
}

#[test]
fn the_stop_path_uses_the_emergency_parser_when_there_is_one() {
    let mut s = identified(10, true);
    let _ = sent(&mut s);
    s.stop(ms(5));
    assert_eq!(s.poll_transmit(), Some(Transmit::ResetBoard));

    let mut s = Streamer::new(program(3), StreamConfig::default(), ms(0));
    let _ = sent(&mut s);
    s.handle_input(b"ok\n", ms(1));
    let _ = sent(&mut s);
    s.handle_input(b"Cap:EMERGENCY_PARSER:1\nok\n", ms(2));
    let _ = sent(&mut s);
    s.handle_input(b"ok\n", ms(3));
    assert!(
        sent(&mut s).iter().any(|l| l.starts_with("N3 G1")),
        "the program did not start"
    );
    s.stop(ms(5));
    assert_eq!(
        s.poll_transmit(),
        Some(Transmit::Emergency(b"M112\n".to_vec()))
    );
}

#[test]
fn a_reboot_mid_job_aborts() {
    let mut s = identified(10, true);
    let _ = sent(&mut s);
    s.handle_input(b"start\n", ms(5));
    assert!(matches!(
        s.outcome(),
        Some(Err(AbortReason::FirmwareRestarted { .. }))
    ));
}

#[test]
fn an_endless_reply_line_aborts() {
    let mut s = identified(10, true);
    s.handle_input(&vec![b'x'; MAX_REPLY_LEN + 10], ms(5));
    assert!(matches!(
        s.outcome(),
        Some(Err(AbortReason::ReplyTooLong { .. }))
    ));
}

#[test]
fn a_checkpoint_without_a_position_report_aborts_instead_of_waiting_forever() {
    let mut s = Streamer::new(program(1), StreamConfig::default(), ms(0));
    let _ = sent(&mut s);
    s.handle_input(b"ok\n", ms(1));
    let _ = sent(&mut s);
    s.handle_input(b"ok\n", ms(2));
    let _ = sent(&mut s);
    s.handle_input(b"ok\n", ms(3));
    // G1, M400, M114 go out one at a time; the firmware acknowledges all without a report.
    for t in 4..12 {
        let _ = sent(&mut s);
        s.handle_input(b"ok\n", ms(t));
        s.handle_timeout(ms(t));
    }
    // Temperature polls keep the link busy; the missing report must still end the job.
    for _ in 0..20 {
        let Some(deadline) = s.poll_timeout() else {
            break;
        };
        s.handle_timeout(deadline);
        if !sent(&mut s).is_empty() {
            s.handle_input(b"ok T:20.0 /0.0 B:20.0 /0.0\n", deadline);
        }
        if s.outcome().is_some() {
            break;
        }
    }
    assert!(
        matches!(
            s.outcome(),
            Some(Err(AbortReason::CheckpointUnanswered { after_command: 0 }))
        ),
        "{:?}",
        s.outcome()
    );
}

#[test]
fn reads_a_position_carried_on_the_ok_line() {
    let Reply::Ok {
        position: Some(p), ..
    } = parse_reply("ok X:1.00 Y:2.00 Z:3.00 E:4.00 Count: A:0 B:0 C:0")
    else {
        panic!("no position")
    };
    assert_eq!(
        p,
        Position {
            x: 1.0,
            y: 2.0,
            z: 3.0,
            e: 4.0
        }
    );
}

#[test]
fn monitor_limits_come_from_the_policy() {
    // Given the paste policy (unheated bed, 2 °C tolerance, 15 s grace, 15 min heat-up),
    let text = include_str!("../../../../policies/sse-levetiracetam-paste.toml");
    let policy = crate::policy::Policy::from_toml(text).unwrap();
    // when the monitor's limits are derived from it,
    let l = MonitorLimits::from_policy(&policy);
    // then they are the policy's, and the unheated bed is not watched.
    assert_eq!(l.hotend_c, Some((20.0, 40.0)));
    assert_eq!(l.bed_c, None);
    assert!((l.tolerance_c - 2.0).abs() < 1e-12);
    assert_eq!(l.grace, ms(15_000));
    assert_eq!(l.heatup_timeout, ms(900_000));
}

#![allow(
    clippy::float_cmp,
    reason = "exact values are the point: decimal inputs, exact arithmetic"
)]

use proptest::prelude::*;

use super::*;

fn one(line: &str) -> Result<Option<Command>, GcodeError> {
    parse_line(line.as_bytes(), 7)
}

fn code_of(line: &[u8]) -> ReasonCode {
    parse_line(line, 1).expect_err("must be refused").code()
}

fn collect(chunks: &[&[u8]]) -> Vec<(u32, Result<String, GcodeError>)> {
    let mut p = Parser::new();
    let mut out = Vec::new();
    for c in chunks {
        p.feed(c, |n, r| out.push((n, r.map(Command::canonical))));
    }
    p.finish(|n, r| out.push((n, r.map(Command::canonical))));
    out
}

#[test]
fn writes_canonical_text_in_fixed_parameter_order() {
    let cmd = one("G1 F1800 E.01681 Y-0.250 X098.5000 ; perimeter")
        .unwrap()
        .unwrap();
    assert_eq!(cmd.canonical(), "G1 X98.5 Y-0.25 E0.01681 F1800");
    assert_eq!(cmd.value(b'E'), Some(0.01681));
}

#[test]
fn canonical_text_parses_back_to_the_same_command() {
    for src in [
        "G1 X.5 Y-.5 Z0.30 E-2 F2400",
        "G28 X0 Y",
        "M104 S185",
        "G92 E0",
        "G4 P500",
        "M106 S226.95",
        "T0",
        "G1 X-0 E000.000",
    ] {
        let a = one(src).unwrap().unwrap();
        let text = a.canonical();
        let b = one(&text).unwrap().unwrap();
        assert_eq!(b.canonical(), text, "{src}");
        for p in a.params() {
            assert_eq!(b.param(p.letter()), Some(*p), "{src}");
        }
    }
}

#[test]
fn negative_zero_is_written_as_zero() {
    assert_eq!(one("G1 X-0.000").unwrap().unwrap().canonical(), "G1 X0");
}

#[test]
fn blank_and_comment_lines_yield_nothing() {
    for src in ["", "   ", "; comment (with parens) and lowercase", "  ;x"] {
        assert_eq!(one(src), Ok(None), "{src:?}");
    }
}

#[test]
fn refuses_each_ambiguous_form_with_its_own_code() {
    let cases: &[(&[u8], ReasonCode)] = &[
        (b"g1 X1", ReasonCode::GcodeLowercase),
        (b"G1 x1", ReasonCode::GcodeLowercase),
        (b"G1 X1e3", ReasonCode::GcodeExponent),
        (b"G1 X1E3", ReasonCode::GcodeExponent),
        (b"G1 X1 (move) E5", ReasonCode::GcodeParenComment),
        (b"N10 G1 X1*45", ReasonCode::GcodeLineNumber),
        (b"G1 N10 X1", ReasonCode::GcodeLineNumber),
        (b"G1 X1*45", ReasonCode::GcodeChecksum),
        (b"G1 E1 E99", ReasonCode::GcodeRepeatedParameter),
        (b"G1 X+1", ReasonCode::GcodeBadNumber),
        (b"G1 X.", ReasonCode::GcodeBadNumber),
        (b"G1 X-", ReasonCode::GcodeBadNumber),
        (b"G1 X0x1F", ReasonCode::GcodeBadNumber),
        (b"G1 XINF", ReasonCode::GcodeBadNumber),
        (b"G1 Xnan", ReasonCode::GcodeLowercase),
        (b"G1 X1.2.3", ReasonCode::GcodeBadNumber),
        (b"G1 X1234567890123456", ReasonCode::GcodeNumberTooLong),
        (b"G1 X0.1234567891", ReasonCode::GcodeNumberTooLong),
        (b"G1 X1Y2", ReasonCode::GcodeMissingSpace),
        (b"G29.1", ReasonCode::GcodeBadNumber),
        (b"G90 X5", ReasonCode::GcodeUnexpectedParameter),
        (b"M82 S1", ReasonCode::GcodeUnexpectedParameter),
        (b"G1 X", ReasonCode::GcodeMissingValue),
        (b"G1 X1\0", ReasonCode::GcodeNul),
        (b"G1 X1 ; caf\xc3\xa9", ReasonCode::GcodeNonAscii),
        (b"G1\tX1", ReasonCode::GcodeControlByte),
        (b"G1 X1\x7f", ReasonCode::GcodeControlByte),
        (b"X1", ReasonCode::GcodeUnknownWord),
        (b"G X1", ReasonCode::GcodeBadNumber),
        (
            b"M999 A1 B2 C3 D4 E5 F6 H7 I8 J9",
            ReasonCode::GcodeTooManyParameters,
        ),
    ];
    for (src, want) in cases {
        assert_eq!(code_of(src), *want, "{}", String::from_utf8_lossy(src));
    }
}

#[test]
fn text_commands_are_recognised_but_not_parsed() {
    let cmd = one("M118 A1 ok T:200").unwrap().unwrap();
    assert!(cmd.has_text_argument());
    assert_eq!(cmd.canonical(), "M118");
}

#[test]
fn accepts_crlf_line_endings() {
    let out = collect(&[b"G1 X1\r\nG1 X2\r\n"]);
    assert_eq!(out.len(), 2);
    assert_eq!(out[1], (2, Ok("G1 X2".to_owned())));
}

#[test]
fn chunk_boundaries_do_not_change_the_result() {
    let src: &[u8] = b"G28\nG1 X1.5 Y2 ; c\n\nM104 S190\nG1 E1 E2\nG1 X3\n";
    let whole = collect(&[src]);
    let bytewise: Vec<&[u8]> = src.chunks(1).collect();
    assert_eq!(collect(&bytewise), whole);
    let threes: Vec<&[u8]> = src.chunks(3).collect();
    assert_eq!(collect(&threes), whole);
    assert_eq!(whole.len(), 5);
    assert_eq!(whole[3].0, 5);
}

#[test]
fn over_long_line_is_refused_even_across_chunks() {
    let long = vec![b' '; MAX_LINE_LEN + 10];
    let mut chunks: Vec<&[u8]> = long.chunks(7).collect();
    chunks.push(b"G1 X1\nG1 X2\n");
    let out = collect(&chunks);
    assert!(matches!(out[0], (1, Err(GcodeError::LineTooLong { .. }))));
    assert_eq!(out[1], (2, Ok("G1 X2".to_owned())));
}

#[test]
fn a_line_of_exactly_the_limit_is_accepted() {
    let mut line = b"G1 X1 ;".to_vec();
    line.resize(MAX_LINE_LEN, b'x');
    assert!(parse_line(&line, 1).unwrap().is_some());
    line.push(b'x');
    assert!(matches!(
        parse_line(&line, 1),
        Err(GcodeError::LineTooLong { .. })
    ));
}

#[test]
fn a_program_without_final_newline_is_truncated() {
    let out = collect(&[b"G28\nM104 S0"]);
    assert_eq!(out[1], (2, Err(GcodeError::Truncated { line: 2 })));
}

#[test]
fn errors_name_the_line() {
    let out = collect(&[b"G28\n\n; x\ng1\n"]);
    assert_eq!(out[1].0, 4);
    assert_eq!(out[1].1.as_ref().unwrap_err().line(), 4);
}

proptest! {
    #[test]
    fn decimal_text_round_trips(m in -999_999_999_999_999i64..=999_999_999_999_999, s in 0u8..=9) {
        let d = Decimal::new(m, s).unwrap();
        let mut text = String::from("G1 X");
        d.write_canonical(&mut text);
        let back = parse_line(text.as_bytes(), 1).unwrap().unwrap();
        let p = back.param(b'X').unwrap().value().unwrap();
        prop_assert_eq!(p, d);
        prop_assert_eq!(p.to_f64().to_bits(), d.to_f64().to_bits());
    }

    #[test]
    fn decimal_value_matches_the_standard_library(m in -99_999_999i64..=99_999_999, s in 0u8..=6) {
        let d = Decimal::new(m, s).unwrap();
        let text = d.to_string();
        prop_assert_eq!(text.parse::<f64>().unwrap(), d.to_f64());
    }

    #[test]
    fn never_panics_on_arbitrary_lines(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = parse_line(&bytes, 1);
    }
}

proptest! {
    #[test]
    fn word_at_a_time_scan_equals_the_byte_loop(bytes in proptest::collection::vec(
        prop_oneof![Just(b';'), Just(0u8), Just(0x7f), Just(0x80), Just(b'\t'), 0x20u8..0x7f],
        0..40,
    )) {
        let bad = bytes.iter().position(|&b| !(0x20..0x7f).contains(&b));
        let semi = bytes.iter().position(|&b| b == b';');
        let (got_bad, got_semi) = scan_line(&bytes);
        prop_assert_eq!(got_bad, bad);
        if bad.is_none() {
            prop_assert_eq!(got_semi, semi);
        }
    }
}

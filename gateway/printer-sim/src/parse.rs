//! How the simulated firmware reads a command line: Marlin 2.1's `GCodeParser::parse`.
//!
//! Owns the text → command step only (after the line number and checksum were checked and
//! stripped). It follows Marlin's rules, not a tidier grammar: a command is `G`, `M` or `T` and
//! its number; a parameter is one upper-case letter, optional spaces and an optional value whose
//! characters are `0-9 . + -`, so `G1X10Y20E.5` and `G1 X10 Y20 E0.5` are the same command; a
//! value is read like `strtof` up to the first character that cannot continue it (Marlin's
//! `value_float` also cuts at `E`, which the character class already excludes). Free-text
//! commands (`M117`, `M118`, …) keep the rest of the line as text. The result is rendered in one
//! normal form (words separated by single spaces, numbers in Rust's shortest decimal form) so the
//! execution log compares equal for every layout a host may choose.

/// Commands whose parameters Marlin reads as free text (`string_arg`).
const TEXT_COMMANDS: &[u16] = &[
    16, 23, 28, 30, 32, 117, 118, 928, 810, 811, 812, 813, 814, 815, 816, 817, 818, 819,
];

fn is_value_char(b: u8) -> bool {
    b.is_ascii_digit() || matches!(b, b'.' | b'+' | b'-')
}

/// Marlin's `valid_float`: `[-+]?\.?[0-9]`.
fn valid_float(rest: &[u8]) -> bool {
    let signless = |s: &[u8]| match s {
        [d, ..] if d.is_ascii_digit() => true,
        [b'.', d, ..] => d.is_ascii_digit(),
        _ => false,
    };
    match rest {
        [b'-' | b'+', tail @ ..] => signless(tail),
        other => signless(other),
    }
}

/// The number `strtof` reads at the start of `text` (sign, digits, one point, digits).
fn strtof_prefix(text: &str) -> Option<f64> {
    let bytes = text.as_bytes();
    let mut end = usize::from(matches!(bytes.first(), Some(b'-' | b'+')));
    let mut seen_point = false;
    while let Some(&b) = bytes.get(end) {
        if b.is_ascii_digit() || (b == b'.' && !seen_point) {
            seen_point |= b == b'.';
            end += 1;
        } else {
            break;
        }
    }
    text.get(..end)?.parse::<f64>().ok()
}

/// Renders a number as the normal form's value: `0.5`, `-2`, `100.2`.
fn render(v: f64) -> String {
    let v = if v == 0.0 { 0.0 } else { v };
    format!("{v}")
}

/// Reads one command line (no line number, no checksum) as Marlin does and returns it in normal
/// form, or `None` when Marlin would find no command in it (it answers `Unknown command`).
pub fn normal_form(line: &str) -> Option<String> {
    let b = line.as_bytes();
    let mut i = 0;
    let skip_spaces = |i: &mut usize| {
        while b.get(*i) == Some(&b' ') {
            *i += 1;
        }
    };
    skip_spaces(&mut i);
    let letter = *b.get(i)?;
    if !matches!(letter, b'G' | b'M' | b'T') {
        return None;
    }
    i += 1;
    skip_spaces(&mut i);
    let start = i;
    while b.get(i).is_some_and(u8::is_ascii_digit) {
        i += 1;
    }
    let code: u16 = line.get(start..i)?.parse().ok()?;
    let mut out = format!("{}{code}", char::from(letter));
    skip_spaces(&mut i);
    if letter == b'M' && TEXT_COMMANDS.contains(&code) {
        let text = line.get(i..)?.trim_end();
        if !text.is_empty() {
            out.push(' ');
            out.push_str(text);
        }
        return Some(out);
    }
    while let Some(&param) = b.get(i) {
        i += 1;
        out.push(' ');
        out.push(char::from(param));
        if param.is_ascii_uppercase() {
            skip_spaces(&mut i);
            let rest = b.get(i..).unwrap_or_default();
            if valid_float(rest) {
                if let Some(v) = line.get(i..).and_then(strtof_prefix) {
                    out.push_str(&render(v));
                }
            }
        }
        if !b.get(i).is_some_and(u8::is_ascii_uppercase) {
            while b.get(i).copied().is_some_and(is_value_char) {
                i += 1;
            }
            skip_spaces(&mut i);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::normal_form;

    #[test]
    fn reads_spaced_and_compact_commands_alike() {
        for (line, want) in [
            ("G1 X10 Y20 E0.5 F1800", "G1 X10 Y20 E0.5 F1800"),
            ("G1X10Y20E.5F1800", "G1 X10 Y20 E0.5 F1800"),
            ("G1  X100.20 Y-.5  E1.2300 ", "G1 X100.2 Y-0.5 E1.23"),
            ("M104S190", "M104 S190"),
            ("G28 X Y", "G28 X Y"),
            ("G28XY", "G28 X Y"),
            ("G92 E0", "G92 E0"),
            ("T0", "T0"),
            ("M117 Hello world", "M117 Hello world"),
        ] {
            assert_eq!(normal_form(line).as_deref(), Some(want), "{line:?}");
        }
    }

    #[test]
    fn cuts_values_where_marlin_does() {
        // `value_float` never reads an exponent: `X1E2` is X1 and E2.
        assert_eq!(normal_form("G1 X1E2").as_deref(), Some("G1 X1 E2"));
        // Lower-case letters are not parameters (FASTER_GCODE_PARSER); their value is skipped.
        assert_eq!(normal_form("G1 x5 Y1").as_deref(), Some("G1 x Y1"));
    }

    #[test]
    fn finds_no_command_where_marlin_finds_none() {
        for line in ["", "X10", "G", "Gx1", "; only a comment"] {
            assert_eq!(normal_form(line), None, "{line:?}");
        }
    }
}

//! Outgoing lines: canonical commands and Marlin's line framing `N<n> <command>*<xor>\n`.
//!
//! Owns the checksum and the rule for what a canonical command may contain. It does not decide
//! what to send or when (that is [`super::Streamer`]), and it never copies source bytes: every
//! command is checked here before it is framed.

use super::StreamError;

/// Longest canonical command, in bytes. Marlin's `MAX_CMD_SIZE` is 96 bytes including the line
/// number and checksum; 80 leaves room for `N<10 digits> ` and `*255`.
pub const MAX_COMMAND_LEN: usize = 80;

/// XOR of every byte, as Marlin computes it over `N<n> <command>`.
pub fn checksum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0, |acc, b| acc ^ b)
}

/// A command in canonical form: one printable-ASCII G/M/T word and its parameters, no line
/// number, no checksum, no comment. Only such commands reach the printer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CanonicalCommand(String);

impl CanonicalCommand {
    /// Checks `text` and wraps it.
    ///
    /// Refused: empty or longer than [`MAX_COMMAND_LEN`]; a byte outside printable ASCII; `*`, `;`,
    /// `(`, `)` or `"` (checksum and comment syntax); leading or trailing space; a first letter
    /// other than upper-case `G`, `M` or `T`; an `N` word (the streamer numbers lines itself).
    pub fn new(text: &str) -> Result<Self, StreamError> {
        let bad = |reason: &'static str| StreamError::NotCanonical {
            command: text.chars().take(MAX_COMMAND_LEN).collect(),
            reason,
        };
        if text.is_empty() {
            return Err(bad("empty"));
        }
        if text.len() > MAX_COMMAND_LEN {
            return Err(bad("longer than 80 bytes"));
        }
        if !text.bytes().all(|b| (0x20..0x7f).contains(&b)) {
            return Err(bad("byte outside printable ASCII"));
        }
        if text
            .bytes()
            .any(|b| matches!(b, b'*' | b';' | b'(' | b')' | b'"'))
        {
            return Err(bad("checksum or comment syntax"));
        }
        if text.starts_with(' ') || text.ends_with(' ') || text.contains("  ") {
            return Err(bad("not single-spaced"));
        }
        if !matches!(text.as_bytes().first(), Some(b'G' | b'M' | b'T')) {
            return Err(bad("does not start with G, M or T"));
        }
        if text.split(' ').any(|w| w.starts_with('N')) {
            return Err(bad("carries a line number"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The command text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The numeric value of parameter `letter` (`S` of `M104 S190`), if present and finite.
    pub fn param(&self, letter: char) -> Option<f64> {
        self.0
            .split(' ')
            .skip(1)
            .find_map(|w| w.strip_prefix(letter))
            .and_then(|v| v.parse::<f64>().ok())
            .filter(|v| v.is_finite())
    }

    /// The command word (`G1`, `M104`).
    pub fn word(&self) -> &str {
        self.0.split(' ').next().unwrap_or_default()
    }
}

impl std::fmt::Display for CanonicalCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Commands whose parameters Marlin reads as free text: never compacted.
const TEXT_COMMANDS: &[&str] = &[
    "M16", "M23", "M28", "M30", "M32", "M117", "M118", "M928", "M810", "M811", "M812", "M813",
    "M814", "M815", "M816", "M817", "M818", "M819",
];

/// The shortest text Marlin reads as the same number: `0.5` → `.5`, `-0.50` → `-.5`,
/// `100.20` → `100.2`, `1.000` → `1`. `None` unless `v` is `-?digits(.digits)?`.
fn short_number(v: &str) -> Option<String> {
    let (sign, abs) = v.strip_prefix('-').map_or(("", v), |a| ("-", a));
    let (int, frac) = abs.split_once('.').unwrap_or((abs, ""));
    if int.is_empty() || !int.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if abs.contains('.') && (frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let frac = frac.trim_end_matches('0');
    let int = if frac.is_empty() || int != "0" {
        int
    } else {
        ""
    };
    Some(if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    })
}

/// The words a command goes out as, and whether they may be written without spaces between
/// them.
///
/// Marlin's parser (`GCodeParser::parse`, 2.0 to 2.1.x) reads a parameter as one upper-case
/// letter, optional spaces, and a value whose characters are `0-9 . + -`; the next upper-case
/// letter starts the next parameter, so `G1X10Y20E.5` means `G1 X10 Y20 E0.5`. `value_float`
/// cuts a value at `E`, so `X1E2` is X1 and E2, never 100. The compact form is used only when
/// every parameter is a letter with such a value (no flags, no free text) and each number is
/// rewritten only to the shortest text of the same decimal value, which `strtof` reads as the
/// same float. Newer Marlin (`ROString` parser) skips a line number only up to a space, so one
/// space always follows `N<n>`.
fn wire_words(command: &CanonicalCommand) -> (Vec<String>, bool) {
    let mut words = command.as_str().split(' ');
    let head = words.next().unwrap_or_default().to_owned();
    let params: Vec<&str> = words.collect();
    let compact = !TEXT_COMMANDS.contains(&head.as_str());
    let mut out = vec![head];
    let mut shortened = Vec::with_capacity(params.len());
    for p in &params {
        let letter = p.bytes().next();
        let value = p.get(1..).and_then(short_number);
        match (letter, value) {
            (Some(l @ b'A'..=b'Z'), Some(v)) if compact => {
                shortened.push(format!("{}{v}", char::from(l)));
            }
            _ => {
                out.extend(params.iter().map(|w| (*w).to_owned()));
                return (out, false);
            }
        }
    }
    out.extend(shortened);
    (out, compact)
}

/// Frames `command` as line `n`: `N<n> <command>*<checksum>\n`, its parameters written compactly
/// when Marlin reads them the same way (see [`wire_words`]): `N7 G1X10Y20E.5F1800*93`.
///
/// Marlin's checksum is an 8-bit XOR. When a UART drops the end of a line (its `*<checksum>` and
/// newline), the rest merges with the next line, and the merged line passes the next line's
/// checksum exactly when the XOR of the surviving prefix is zero — a silently corrupted command.
/// So the frame is laid out (an extra space between words where needed; Marlin skips spaces
/// between words and before a value) to avoid zero-XOR prefixes. That halves the share of lines
/// exposed but cannot remove it: when the XOR after a word is 0x00 or 0x20, every layout has
/// one. The real defences are a byte window that never overflows the firmware's receive buffer
/// and the position checkpoints.
pub fn frame(n: u32, command: &CanonicalCommand) -> Vec<u8> {
    let (words, compact) = wire_words(command);
    // Gaps: after `N<n>` (always a space), after each word (none when compact); each may take
    // one extra space, and a space may precede `*`. The layout with the fewest extra bytes and
    // no zero-XOR prefix wins (almost always the plain one).
    let gaps = words.len().min(8);
    let mut candidates: Vec<(u32, bool)> = (0u32..(1 << gaps))
        .flat_map(|mask| [(mask, false), (mask, true)])
        .collect();
    candidates.sort_by_key(|&(mask, trailing)| mask.count_ones() + u32::from(trailing));
    let mut first = None;
    for (mask, trailing) in candidates {
        let candidate = layout(n, &words, compact, mask, trailing);
        if no_zero_prefix(&candidate) {
            return candidate;
        }
        first.get_or_insert(candidate);
    }
    first.unwrap_or_else(|| layout(n, &words, compact, 0, false))
}

fn layout(n: u32, words: &[String], compact: bool, mask: u32, trailing: bool) -> Vec<u8> {
    let mut body = format!("N{n}");
    for (i, w) in words.iter().enumerate() {
        let base = if i == 0 || !compact { " " } else { "" };
        body.push_str(base);
        if i < 32 && mask & (1 << i) != 0 {
            body.push(' ');
        }
        body.push_str(w);
    }
    if trailing {
        body.push(' ');
    }
    let cs = checksum(body.as_bytes());
    format!("{body}*{cs}\n").into_bytes()
}

fn no_zero_prefix(line: &[u8]) -> bool {
    let mut acc = 0u8;
    line.iter().take(line.len().saturating_sub(1)).all(|b| {
        acc ^= b;
        acc != 0
    })
}

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

/// Frames `command` as line `n`: `N<n> <command>*<checksum>\n`.
///
/// Marlin's checksum is an 8-bit XOR. When a UART drops the end of a line (its `*<checksum>` and
/// newline), the rest merges with the next line, and the merged line passes the next line's
/// checksum exactly when the XOR of the surviving prefix is zero — a silently corrupted command.
/// So the frame is laid out (an extra space between words where needed; Marlin skips repeated
/// spaces) to avoid zero-XOR prefixes. That halves the share of lines exposed (about one in
/// seven to one in fourteen) but cannot remove it: when the XOR after a word is 0x00 or 0x20,
/// every layout has one. The real defences are a byte window that never overflows the
/// firmware's receive buffer and the position checkpoints.
pub fn frame(n: u32, command: &CanonicalCommand) -> Vec<u8> {
    // `N` followed by digits never has a zero prefix XOR (0x4E against 0x3X), so only the
    // separators before each word (one or two spaces) and an optional space before `*` are
    // chosen; the first layout without a zero prefix wins (almost always the plain one).
    let words: Vec<&str> = command.as_str().split(' ').collect();
    let choices = words.len().min(8);
    let mut first = None;
    for mask in 0u32..(1 << choices) {
        for trailing in [false, true] {
            let candidate = layout(n, &words, mask, trailing);
            if no_zero_prefix(&candidate) {
                return candidate;
            }
            first.get_or_insert(candidate);
        }
    }
    first.unwrap_or_else(|| layout(n, &words, 0, false))
}

fn layout(n: u32, words: &[&str], mask: u32, trailing: bool) -> Vec<u8> {
    let mut body = format!("N{n}");
    for (i, w) in words.iter().enumerate() {
        body.push_str(if i < 32 && mask & (1 << i) != 0 {
            "  "
        } else {
            " "
        });
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

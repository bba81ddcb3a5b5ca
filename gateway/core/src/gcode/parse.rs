//! The strict, streaming G-code parser and the canonical text form.
//!
//! It owns the *syntax*: which bytes make a command, and how a command is written back out. It is
//! fed chunks of any size (a file never has to be in memory), keeps at most one partial line
//! ([`MAX_LINE_LEN`] bytes), and yields one [`Command`] or one [`GcodeError`] per non-blank line.
//! It does not decide whether a command is allowed (that is [`crate::policy`]) and does no I/O.
//!
//! # Grammar (everything else is refused)
//!
//! ```text
//! line    = { " " } [ command { " " { " " } word } ] { " " } [ ";" comment ] ["\r"] "\n"
//! command = ("G" | "M" | "T") digit{1,4}
//! word    = letter [ number ]          letter = "A"…"Z" except "N"
//! number  = ["-"] digits ["." {digit}] | ["-"] "." digits     (at most 15 digits, 9 decimals)
//! ```
//!
//! Every byte of the file, comments included, must be printable ASCII (0x20–0x7E). Refused
//! because Marlin, `strtof` or other hosts read them differently, or because they hide content:
//! lowercase letters, exponents (`X1E3` is X1 and E3 to Marlin, 1000 to `strtof`), parenthesis
//! comments, `N` line numbers and `*` checksums (the gateway adds its own), repeated parameters
//! (`E1 E99`), a leading `+`, a lone `.`, hex and inf/nan, words glued together, NUL and control
//! bytes, non-ASCII, lines over [`MAX_LINE_LEN`] bytes, a last line with no newline, and
//! parameters a known command does not take (`G90 X5`). Comments after `;` are skipped and never
//! used for any decision.
//!
//! # Canonical form
//!
//! A number is kept as an exact decimal ([`Decimal`]: an integer mantissa and a count of decimal
//! places, trailing zeros removed), so its text form is fixed and reading it back gives the same
//! value bit for bit. A command is written as its letter and code, then each parameter, separated
//! by one space, in the order X Y Z E F and then alphabetical: `G1 X10.5 Y-0.25 E0.0123 F1800`.

use crate::policy::ReasonCode;

/// Longest accepted line, in bytes, without its line ending.
pub const MAX_LINE_LEN: usize = 256;
/// Most parameters on one command.
pub const MAX_PARAMS: usize = 8;
/// Most digits in one number (keeps every accepted number exact in an `f64` mantissa).
pub const MAX_DIGITS: u32 = 15;
/// Most digits after the decimal point.
pub const MAX_DECIMALS: u8 = 9;

const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
const POW10_U64: [u64; 10] = [
    1,
    10,
    100,
    1_000,
    10_000,
    100_000,
    1_000_000,
    10_000_000,
    100_000_000,
    1_000_000_000,
];

/// Why a line was refused. Every variant names the 1-based source line; most also the 1-based
/// byte column and the offending byte.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GcodeError {
    /// The line is longer than [`MAX_LINE_LEN`].
    #[error("line {line}: {len} bytes, longer than the {MAX_LINE_LEN}-byte limit")]
    LineTooLong {
        /// Source line.
        line: u32,
        /// Its length (or how much of it was seen before giving up).
        len: usize,
    },
    /// A NUL byte (Marlin ends the line there; other readers do not).
    #[error("line {line}, column {column}: NUL byte")]
    Nul {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
    },
    /// A byte of 0x80 or above.
    #[error("line {line}, column {column}: non-ASCII byte 0x{byte:02X}")]
    NonAscii {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// A control byte (below 0x20, or DEL) other than the line ending.
    #[error("line {line}, column {column}: control byte 0x{byte:02X}")]
    ControlByte {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// A lowercase letter outside a comment (Marlin does not upper-case; Klipper does).
    #[error("line {line}, column {column}: lowercase letter {:?}", char::from(*byte))]
    Lowercase {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// A number followed by `e`/`E` (an exponent to `strtof`, a new word to Marlin).
    #[error("line {line}, column {column}: exponent after a number")]
    Exponent {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
    },
    /// A parenthesis (comment) outside a `;` comment.
    #[error("line {line}, column {column}: parenthesis comment")]
    ParenComment {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
    },
    /// An `N` line number in the source.
    #[error("line {line}, column {column}: N line number in the source")]
    LineNumber {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
    },
    /// A `*` checksum in the source.
    #[error("line {line}, column {column}: * checksum in the source")]
    Checksum {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
    },
    /// The same parameter letter twice on one command.
    #[error("line {line}: parameter {letter} repeated")]
    RepeatedParameter {
        /// Source line.
        line: u32,
        /// The letter.
        letter: char,
    },
    /// Not a number by the strict grammar (leading `+`, lone `.`, hex, inf/nan, subcodes…).
    #[error("line {line}, column {column}: not a plain decimal number")]
    BadNumber {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
    },
    /// More than [`MAX_DIGITS`] digits or [`MAX_DECIMALS`] decimals.
    #[error(
        "line {line}, column {column}: number with too many digits (at most {MAX_DIGITS}, {MAX_DECIMALS} decimals)"
    )]
    NumberTooLong {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
    },
    /// A line that does not start with G, M or T, or a word that is not a letter.
    #[error("line {line}, column {column}: unexpected {:?}", char::from(*byte))]
    UnknownWord {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
        /// The byte.
        byte: u8,
    },
    /// Two words with no space between them (`X1Y2`).
    #[error("line {line}, column {column}: words must be separated by a space")]
    MissingSpace {
        /// Source line.
        line: u32,
        /// Byte column.
        column: usize,
    },
    /// A parameter the command does not take (`G90 X5`).
    #[error("line {line}: {command} does not take parameter {letter}")]
    UnexpectedParameter {
        /// Source line.
        line: u32,
        /// The command, e.g. `G90`.
        command: CommandWord,
        /// The letter.
        letter: char,
    },
    /// A parameter with no value where the command needs one (`G1 X`).
    #[error("line {line}: {command} parameter {letter} has no value")]
    MissingValue {
        /// Source line.
        line: u32,
        /// The command.
        command: CommandWord,
        /// The letter.
        letter: char,
    },
    /// More than [`MAX_PARAMS`] parameters.
    #[error("line {line}: more than {MAX_PARAMS} parameters")]
    TooManyParameters {
        /// Source line.
        line: u32,
    },
    /// The input ends inside a line (no final newline): the file is cut short.
    #[error("line {line}: the program ends without a newline (truncated)")]
    Truncated {
        /// Source line.
        line: u32,
    },
}

impl GcodeError {
    /// The source line the error is about.
    pub fn line(&self) -> u32 {
        match self {
            Self::LineTooLong { line, .. }
            | Self::Nul { line, .. }
            | Self::NonAscii { line, .. }
            | Self::ControlByte { line, .. }
            | Self::Lowercase { line, .. }
            | Self::Exponent { line, .. }
            | Self::ParenComment { line, .. }
            | Self::LineNumber { line, .. }
            | Self::Checksum { line, .. }
            | Self::RepeatedParameter { line, .. }
            | Self::BadNumber { line, .. }
            | Self::NumberTooLong { line, .. }
            | Self::UnknownWord { line, .. }
            | Self::MissingSpace { line, .. }
            | Self::UnexpectedParameter { line, .. }
            | Self::MissingValue { line, .. }
            | Self::TooManyParameters { line }
            | Self::Truncated { line } => *line,
        }
    }

    /// The stable machine code of this error.
    pub fn code(&self) -> ReasonCode {
        match self {
            Self::LineTooLong { .. } => ReasonCode::GcodeLineTooLong,
            Self::Nul { .. } => ReasonCode::GcodeNul,
            Self::NonAscii { .. } => ReasonCode::GcodeNonAscii,
            Self::ControlByte { .. } => ReasonCode::GcodeControlByte,
            Self::Lowercase { .. } => ReasonCode::GcodeLowercase,
            Self::Exponent { .. } => ReasonCode::GcodeExponent,
            Self::ParenComment { .. } => ReasonCode::GcodeParenComment,
            Self::LineNumber { .. } => ReasonCode::GcodeLineNumber,
            Self::Checksum { .. } => ReasonCode::GcodeChecksum,
            Self::RepeatedParameter { .. } => ReasonCode::GcodeRepeatedParameter,
            Self::BadNumber { .. } => ReasonCode::GcodeBadNumber,
            Self::NumberTooLong { .. } => ReasonCode::GcodeNumberTooLong,
            Self::UnknownWord { .. } => ReasonCode::GcodeUnknownWord,
            Self::MissingSpace { .. } => ReasonCode::GcodeMissingSpace,
            Self::UnexpectedParameter { .. } => ReasonCode::GcodeUnexpectedParameter,
            Self::MissingValue { .. } => ReasonCode::GcodeMissingValue,
            Self::TooManyParameters { .. } => ReasonCode::GcodeTooManyParameters,
            Self::Truncated { .. } => ReasonCode::GcodeTruncated,
        }
    }
}

/// An exact decimal number: `mantissa / 10^scale`, with no trailing zeros in the fraction and no
/// negative zero, so equal values have equal representations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Decimal {
    mantissa: i64,
    scale: u8,
}

impl Decimal {
    /// Builds a normalised decimal (`None` if it exceeds the digit limits).
    pub fn new(mantissa: i64, scale: u8) -> Option<Self> {
        if scale > MAX_DECIMALS || mantissa.unsigned_abs() >= 10u64.pow(MAX_DIGITS) {
            return None;
        }
        let mut d = Self { mantissa, scale };
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        Some(d)
    }

    /// The value as `f64`: the correctly rounded value of the decimal (both parts are exact in
    /// `f64`, and one IEEE division rounds once).
    #[expect(
        clippy::cast_precision_loss,
        reason = "|mantissa| < 10^15 < 2^53 is exact"
    )]
    pub fn to_f64(self) -> f64 {
        let div = POW10.get(usize::from(self.scale)).copied().unwrap_or(1.0);
        self.mantissa as f64 / div
    }

    /// The integer mantissa.
    pub fn mantissa(self) -> i64 {
        self.mantissa
    }

    /// Digits after the decimal point.
    pub fn scale(self) -> u8 {
        self.scale
    }

    /// Appends the canonical text: `-` if negative, the integer part (at least one digit), and
    /// if the number has a fraction, `.` and exactly `scale` digits.
    pub fn write_canonical(self, out: &mut String) {
        let mut bytes = Vec::with_capacity(24);
        self.write_canonical_bytes(&mut bytes);
        out.push_str(std::str::from_utf8(&bytes).unwrap_or_default());
    }

    /// [`Self::write_canonical`] into bytes (ASCII).
    pub fn write_canonical_bytes(self, out: &mut Vec<u8>) {
        if self.mantissa < 0 {
            out.push(b'-');
        }
        let abs = self.mantissa.unsigned_abs();
        let div = POW10_U64.get(usize::from(self.scale)).copied().unwrap_or(1);
        push_digits(out, abs / div, 1);
        if self.scale > 0 {
            out.push(b'.');
            push_digits(out, abs % div, usize::from(self.scale));
        }
    }
}

/// Appends `v` in decimal, left-padded with zeros to at least `width` digits (at most 20). The
/// canonical form is written once per command sent, so this avoids the `fmt` machinery.
fn push_digits(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let mut buf = [b'0'; 20];
    let mut start = buf.len();
    while v > 0 && start > 0 {
        start -= 1;
        if let Some(d) = buf.get_mut(start) {
            // `v % 10` < 10: always one decimal digit.
            let digit = (v % 10) as u8;
            *d = b'0' + digit;
        }
        v /= 10;
    }
    let start = start.min(buf.len().saturating_sub(width.max(1)));
    out.extend_from_slice(buf.get(start..).unwrap_or(&[]));
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write_canonical(&mut s);
        f.write_str(&s)
    }
}

/// A command word such as `G1` or `M104`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CommandWord {
    /// `b'G'`, `b'M'` or `b'T'`.
    pub letter: u8,
    /// The number.
    pub code: u16,
}

impl std::fmt::Display for CommandWord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}{}", char::from(self.letter), self.code)
    }
}

/// One parameter word: a letter and, unless it is a flag (`G28 X`), a value. 16 bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    mantissa: i64,
    letter: u8,
    scale: u8,
    has_value: bool,
}

impl Param {
    /// The letter, `b'A'`…`b'Z'`.
    pub fn letter(self) -> u8 {
        self.letter
    }
    /// The value, if any.
    pub fn value(self) -> Option<Decimal> {
        self.has_value.then_some(Decimal {
            mantissa: self.mantissa,
            scale: self.scale,
        })
    }
}

const EMPTY_PARAM: Param = Param {
    mantissa: 0,
    letter: 0,
    scale: 0,
    has_value: false,
};

/// One parsed command. Small and `Copy`: the parser allocates nothing per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    params: [Param; MAX_PARAMS],
    code: u16,
    letter: u8,
    len: u8,
    text_argument: bool,
}

impl Default for Command {
    fn default() -> Self {
        Self {
            params: [EMPTY_PARAM; MAX_PARAMS],
            code: 0,
            letter: b'G',
            len: 0,
            text_argument: false,
        }
    }
}

impl Command {
    /// `b'G'`, `b'M'` or `b'T'`.
    pub fn letter(&self) -> u8 {
        self.letter
    }
    /// The command number (`1` for `G1`).
    pub fn code(&self) -> u16 {
        self.code
    }
    /// True for `G`/`M`/`T` with this code.
    pub fn is(&self, letter: u8, code: u16) -> bool {
        self.letter == letter && self.code == code
    }
    /// True if this command takes free text (`M117`, `M118`, `M23`…): its text is not parsed
    /// and not kept (no policy allows such a command).
    pub fn has_text_argument(&self) -> bool {
        self.text_argument
    }
    /// The parameters, in source order.
    pub fn params(&self) -> &[Param] {
        self.params.get(..usize::from(self.len)).unwrap_or(&[])
    }
    /// The parameter with this letter, if present.
    pub fn param(&self, letter: u8) -> Option<Param> {
        self.params().iter().copied().find(|p| p.letter == letter)
    }
    /// The value of the parameter with this letter, if present with a value.
    pub fn value(&self, letter: u8) -> Option<f64> {
        self.params()
            .iter()
            .find(|p| p.letter == letter && p.has_value)
            .and_then(|p| p.value())
            .map(Decimal::to_f64)
    }
    /// The command word.
    pub fn word(&self) -> CommandWord {
        CommandWord {
            letter: self.letter,
            code: self.code,
        }
    }
    /// The command word as text, e.g. `G1`.
    pub fn name(&self) -> String {
        self.word().to_string()
    }

    /// Appends the canonical text form (without line ending).
    pub fn write_canonical(&self, out: &mut String) {
        let mut bytes = Vec::with_capacity(64);
        self.write_canonical_bytes(&mut bytes);
        out.push_str(std::str::from_utf8(&bytes).unwrap_or_default());
    }

    /// [`Self::write_canonical`] into bytes (ASCII).
    pub fn write_canonical_bytes(&self, out: &mut Vec<u8>) {
        out.push(self.letter);
        push_digits(out, u64::from(self.code), 1);
        let mut sorted = self.params;
        let n = usize::from(self.len);
        if let Some(used) = sorted.get_mut(..n) {
            // Slicers mostly write X Y Z E F already: sort only when needed.
            if !used.is_sorted_by_key(|p| canonical_rank(p.letter)) {
                used.sort_unstable_by_key(|p| canonical_rank(p.letter));
            }
            for p in used.iter() {
                out.push(b' ');
                out.push(p.letter);
                if let Some(v) = p.value() {
                    v.write_canonical_bytes(out);
                }
            }
        }
    }

    /// The canonical text form.
    pub fn canonical(&self) -> String {
        let mut s = String::with_capacity(32);
        self.write_canonical(&mut s);
        s
    }
}

/// Sort key of the canonical parameter order: X Y Z E F, then the other letters alphabetically.
fn canonical_rank(letter: u8) -> u8 {
    match letter {
        b'X' => 0,
        b'Y' => 1,
        b'Z' => 2,
        b'E' => 3,
        b'F' => 4,
        other => other,
    }
}

const fn mask(letters: &[u8]) -> u32 {
    let mut m = 0u32;
    let mut rest = letters;
    while let [first, tail @ ..] = rest {
        m |= 1 << (*first - b'A');
        rest = tail;
    }
    m
}

/// What Marlin reads for a command it knows: the parameter letters it takes, which of them may
/// stand alone as flags, and whether the rest of the line is free text.
#[derive(Debug, Clone, Copy)]
struct Spec {
    params: u32,
    flags: u32,
    text: bool,
}

#[expect(
    clippy::unnecessary_wraps,
    reason = "keeps the table below one expression per row"
)]
const fn spec(params: &[u8], flags: &[u8]) -> Option<Spec> {
    Some(Spec {
        params: mask(params),
        flags: mask(flags),
        text: false,
    })
}

const TEXT: Option<Spec> = Some(Spec {
    params: 0,
    flags: 0,
    text: true,
});

/// Marlin 2.1's parameters for the commands this project meets (allowed or known dangerous).
/// Commands not listed parse with any parameters; the policy refuses them anyway.
#[expect(
    clippy::match_same_arms,
    reason = "one row per command family reads as Marlin's docs"
)]
fn marlin_spec(letter: u8, code: u16) -> Option<Spec> {
    match (letter, code) {
        (b'G', 0 | 1) => spec(b"XYZEF", b""),
        (b'G', 2 | 3) => spec(b"XYZEFIJRP", b""),
        (b'G', 4) => spec(b"PS", b""),
        (b'G', 10 | 11) => spec(b"S", b""),
        (b'G', 20 | 21 | 90 | 91) | (b'M', 82 | 83 | 400 | 500..=502 | 997) => spec(b"", b""),
        (b'G', 28) => spec(b"XYZLOR", b"XYZLO"),
        (b'G', 92) => spec(b"XYZE", b""),
        (b'M', 17 | 18 | 84) => spec(b"XYZES", b"XYZE"),
        (b'M', 73) => spec(b"PRQSC", b""),
        (b'M', 104) => spec(b"SBFTI", b"F"),
        (b'M', 109) => spec(b"SRBFTI", b"F"),
        (b'M', 105) => spec(b"TR", b""),
        (b'M', 106) => spec(b"SPIT", b""),
        (b'M', 107) => spec(b"P", b""),
        (b'M', 114) => spec(b"DER", b"DER"),
        (b'M', 140) => spec(b"SI", b""),
        (b'M', 190) => spec(b"SRI", b""),
        (b'M', 155) => spec(b"S", b""),
        (b'M', 503) => spec(b"SC", b""),
        (b'M', 504) => spec(b"", b""),
        (b'M', 23 | 28 | 30 | 32 | 33 | 117 | 118 | 928 | 810..=819) => TEXT,
        (b'T', _) => spec(b"FS", b""),
        _ => None,
    }
}

/// Where the parser is in a line.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
    line: u32,
}

impl Cursor<'_> {
    #[inline]
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    #[inline]
    fn column(&self) -> usize {
        self.pos + 1
    }
    #[inline]
    fn skip_spaces(&mut self) -> bool {
        let start = self.pos;
        while self.peek() == Some(b' ') {
            self.pos += 1;
        }
        self.pos > start
    }

    /// The error for byte `b` found where a word (or the end of the line) had to start.
    fn bad_word_start(&self, b: u8) -> GcodeError {
        let (line, column) = (self.line, self.column());
        match b {
            b'a'..=b'z' => GcodeError::Lowercase {
                line,
                column,
                byte: b,
            },
            b'(' | b')' => GcodeError::ParenComment { line, column },
            b'*' => GcodeError::Checksum { line, column },
            b'N' => GcodeError::LineNumber { line, column },
            _ => GcodeError::UnknownWord {
                line,
                column,
                byte: b,
            },
        }
    }

    /// After a command code or a number: the next byte must be a space or the end.
    #[inline]
    fn expect_separator(&self, after_digits: bool) -> Result<(), GcodeError> {
        let (line, column) = (self.line, self.column());
        match self.peek() {
            None | Some(b' ') => Ok(()),
            Some(b'e' | b'E') if after_digits => Err(GcodeError::Exponent { line, column }),
            Some(b'A'..=b'M' | b'O'..=b'Z') => Err(GcodeError::MissingSpace { line, column }),
            Some(b'.' | b'+' | b'-') => Err(GcodeError::BadNumber { line, column }),
            Some(b) => Err(self.bad_word_start(b)),
        }
    }

    /// Reads a run of digits into `acc` (wrapping; the caller bounds the count).
    #[inline]
    fn digits(&mut self, acc: &mut u64) -> u32 {
        let mut n = 0u32;
        while let Some(&b) = self.bytes.get(self.pos) {
            let d = b.wrapping_sub(b'0');
            if d > 9 {
                break;
            }
            *acc = acc.wrapping_mul(10).wrapping_add(u64::from(d));
            n += 1;
            self.pos += 1;
        }
        n
    }

    #[inline]
    fn number(&mut self) -> Result<Decimal, GcodeError> {
        let start = self.column();
        let line = self.line;
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let mut acc = 0u64;
        let int_digits = self.digits(&mut acc);
        let mut frac_digits = 0u32;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            frac_digits = self.digits(&mut acc);
        }
        if int_digits + frac_digits > MAX_DIGITS || frac_digits > u32::from(MAX_DECIMALS) {
            return Err(GcodeError::NumberTooLong {
                line,
                column: start,
            });
        }
        if int_digits + frac_digits == 0 {
            return Err(match self.peek() {
                Some(b @ b'a'..=b'z') => GcodeError::Lowercase {
                    line,
                    column: self.column(),
                    byte: b,
                },
                _ => GcodeError::BadNumber {
                    line,
                    column: start,
                },
            });
        }
        // `0x1F`: hex is a `strtof` reading; Marlin stops at the `x`.
        if matches!(self.peek(), Some(b'x' | b'X')) && int_digits == 1 && acc == 0 {
            return Err(GcodeError::BadNumber {
                line,
                column: start,
            });
        }
        // At most 15 digits: fits in i64 and in an f64 mantissa.
        #[expect(clippy::cast_possible_wrap, reason = "acc < 10^15")]
        let magnitude = acc as i64;
        #[expect(clippy::cast_possible_truncation, reason = "frac_digits <= 9")]
        let mut d = Decimal {
            mantissa: if negative { -magnitude } else { magnitude },
            scale: frac_digits as u8,
        };
        while d.scale > 0 && d.mantissa % 10 == 0 {
            d.mantissa /= 10;
            d.scale -= 1;
        }
        Ok(d)
    }
}

const LOW7: u64 = 0x0101_0101_0101_0101;
const HIGH: u64 = 0x8080_8080_8080_8080;

/// True if any byte of `x` is below 0x20, is 0x7F, or is 0x80 or above (SWAR, 8 bytes at a time).
fn word_has_bad_byte(x: u64) -> bool {
    let below_space = x.wrapping_sub(LOW7 * 0x20) & !x;
    let del = x ^ (LOW7 * 0x7f);
    let is_del = del.wrapping_sub(LOW7) & !del;
    (below_space | is_del | x) & HIGH != 0
}

/// The position of the first zero byte of `x` (exact for the lowest one), if any.
fn first_zero_byte(x: u64) -> Option<usize> {
    let z = x.wrapping_sub(LOW7) & !x & HIGH;
    (z != 0).then(|| (z.trailing_zeros() / 8) as usize)
}

/// One pass over a line: the first byte outside printable ASCII (0x20–0x7E) and the first `;`.
fn scan_line(raw: &[u8]) -> (Option<usize>, Option<usize>) {
    let mut semicolon = None;
    let mut chunks = raw.chunks_exact(8);
    let mut offset = 0;
    for c in chunks.by_ref() {
        let mut w = [0u8; 8];
        w.copy_from_slice(c);
        let x = u64::from_le_bytes(w);
        if word_has_bad_byte(x) {
            break;
        }
        if semicolon.is_none() {
            semicolon = first_zero_byte(x ^ (LOW7 * u64::from(b';'))).map(|i| i + offset);
        }
        offset += 8;
    }
    let rest = raw.get(offset..).unwrap_or(&[]);
    if semicolon.is_none() {
        semicolon = rest.iter().position(|&b| b == b';').map(|i| i + offset);
    }
    let bad = rest
        .iter()
        .position(|&b| !(0x20..0x7f).contains(&b))
        .map(|i| i + offset);
    (bad, semicolon)
}

/// Parses one line (without its line ending). `Ok(None)` for blank and comment-only lines.
pub fn parse_line(raw: &[u8], line: u32) -> Result<Option<Command>, GcodeError> {
    let mut cmd = Command::default();
    Ok(parse_line_into(raw, line, &mut cmd)?.then_some(cmd))
}

/// Parses one line into `cmd` (reused between lines: no copy, no allocation). Returns `false`
/// for blank and comment-only lines.
#[expect(clippy::too_many_lines, reason = "one pass over the grammar, in order")]
pub fn parse_line_into(raw: &[u8], line: u32, cmd: &mut Command) -> Result<bool, GcodeError> {
    if raw.len() > MAX_LINE_LEN {
        return Err(GcodeError::LineTooLong {
            line,
            len: raw.len(),
        });
    }
    let (bad, semicolon) = scan_line(raw);
    if let Some(i) = bad {
        let column = i + 1;
        let byte = raw.get(i).copied().unwrap_or(0);
        return Err(match byte {
            0 => GcodeError::Nul { line, column },
            0x80.. => GcodeError::NonAscii { line, column, byte },
            _ => GcodeError::ControlByte { line, column, byte },
        });
    }
    let active = match semicolon {
        Some(i) => raw.get(..i).unwrap_or(raw),
        None => raw,
    };
    let mut cur = Cursor {
        bytes: active,
        pos: 0,
        line,
    };
    cur.skip_spaces();
    let Some(letter) = cur.peek() else {
        return Ok(false);
    };
    if !matches!(letter, b'G' | b'M' | b'T') {
        return Err(cur.bad_word_start(letter));
    }
    cur.pos += 1;
    let mut code = 0u64;
    let code_digits = cur.digits(&mut code);
    if code_digits > 4 {
        return Err(GcodeError::BadNumber {
            line,
            column: cur.column(),
        });
    }
    if code_digits == 0 {
        return Err(match cur.peek() {
            Some(b @ b'a'..=b'z') => GcodeError::Lowercase {
                line,
                column: cur.column(),
                byte: b,
            },
            _ => GcodeError::BadNumber {
                line,
                column: cur.column(),
            },
        });
    }
    cur.expect_separator(false)?;
    let code = u16::try_from(code).unwrap_or(u16::MAX);
    let spec = marlin_spec(letter, code);
    cmd.letter = letter;
    cmd.code = code;
    cmd.len = 0;
    cmd.text_argument = false;
    if spec.is_some_and(|s| s.text) {
        cmd.text_argument = true;
        return Ok(true);
    }
    let word = cmd.word();
    let mut seen = 0u32;
    loop {
        cur.skip_spaces();
        let Some(b) = cur.peek() else { break };
        if !b.is_ascii_uppercase() || b == b'N' {
            return Err(cur.bad_word_start(b));
        }
        cur.pos += 1;
        let bit = 1u32 << (b - b'A');
        let value = match cur.peek() {
            None | Some(b' ') => None,
            Some(_) => {
                let v = cur.number()?;
                cur.expect_separator(true)?;
                Some(v)
            }
        };
        if seen & bit != 0 {
            return Err(GcodeError::RepeatedParameter {
                line,
                letter: char::from(b),
            });
        }
        seen |= bit;
        if let Some(s) = spec {
            if s.params & bit == 0 {
                return Err(GcodeError::UnexpectedParameter {
                    line,
                    command: word,
                    letter: char::from(b),
                });
            }
            if value.is_none() && s.flags & bit == 0 {
                return Err(GcodeError::MissingValue {
                    line,
                    command: word,
                    letter: char::from(b),
                });
            }
        }
        let slot = cmd
            .params
            .get_mut(usize::from(cmd.len))
            .ok_or(GcodeError::TooManyParameters { line })?;
        *slot = match value {
            Some(d) => Param {
                mantissa: d.mantissa,
                letter: b,
                scale: d.scale,
                has_value: true,
            },
            None => Param {
                mantissa: 0,
                letter: b,
                scale: 0,
                has_value: false,
            },
        };
        cmd.len += 1;
    }
    Ok(true)
}

/// The streaming parser: feed it chunks, it calls back once per non-blank line.
#[derive(Debug, Default)]
pub struct Parser {
    carry: Vec<u8>,
    carry_len: usize,
    line: u32,
    bytes: u64,
    scratch: Command,
}

impl Parser {
    /// A parser at the start of a program.
    pub fn new() -> Self {
        Self {
            carry: Vec::with_capacity(MAX_LINE_LEN + 1),
            carry_len: 0,
            line: 0,
            bytes: 0,
            scratch: Command::default(),
        }
    }

    /// Lines completed so far.
    pub fn lines(&self) -> u32 {
        self.line
    }

    /// Bytes fed so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    fn emit<F>(&mut self, raw: &[u8], sink: &mut F)
    where
        F: FnMut(u32, Result<&Command, GcodeError>),
    {
        self.line = self.line.saturating_add(1);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match parse_line_into(raw, self.line, &mut self.scratch) {
            Ok(true) => sink(self.line, Ok(&self.scratch)),
            Ok(false) => {}
            Err(e) => sink(self.line, Err(e)),
        }
    }

    fn emit_carry<F>(&mut self, sink: &mut F)
    where
        F: FnMut(u32, Result<&Command, GcodeError>),
    {
        let carry = std::mem::take(&mut self.carry);
        if self.carry_len > carry.len() {
            self.line = self.line.saturating_add(1);
            sink(
                self.line,
                Err(GcodeError::LineTooLong {
                    line: self.line,
                    len: self.carry_len,
                }),
            );
        } else {
            self.emit(&carry, sink);
        }
        self.carry = carry;
        self.carry.clear();
        self.carry_len = 0;
    }

    fn stash(&mut self, part: &[u8]) {
        self.carry_len = self.carry_len.saturating_add(part.len());
        let room = (MAX_LINE_LEN + 1).saturating_sub(self.carry.len());
        self.carry
            .extend_from_slice(part.get(..room.min(part.len())).unwrap_or(&[]));
    }

    /// Feeds the next chunk of the program. `sink(line, result)` is called for every complete
    /// non-blank line, in order.
    pub fn feed<F>(&mut self, chunk: &[u8], mut sink: F)
    where
        F: FnMut(u32, Result<&Command, GcodeError>),
    {
        self.bytes = self.bytes.saturating_add(chunk.len() as u64);
        let mut rest = chunk;
        if self.carry_len > 0 {
            let Some(i) = memchr::memchr(b'\n', rest) else {
                self.stash(rest);
                return;
            };
            self.stash(rest.get(..i).unwrap_or(&[]));
            self.emit_carry(&mut sink);
            rest = rest.get(i + 1..).unwrap_or(&[]);
        }
        let mut start = 0;
        for i in memchr::memchr_iter(b'\n', rest) {
            self.emit(rest.get(start..i).unwrap_or(&[]), &mut sink);
            start = i + 1;
        }
        let tail = rest.get(start..).unwrap_or(&[]);
        if !tail.is_empty() {
            self.stash(tail);
        }
    }

    /// Ends the program. A last line without a newline is reported as [`GcodeError::Truncated`]
    /// and not executed (Marlin would not run it either until a line ending arrives).
    pub fn finish<F>(&mut self, mut sink: F)
    where
        F: FnMut(u32, Result<&Command, GcodeError>),
    {
        if self.carry_len > 0 {
            self.line = self.line.saturating_add(1);
            sink(self.line, Err(GcodeError::Truncated { line: self.line }));
            self.carry.clear();
            self.carry_len = 0;
        }
    }
}

#[cfg(test)]
mod tests;

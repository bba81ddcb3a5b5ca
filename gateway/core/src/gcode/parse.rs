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

use std::fmt::Write as _;

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
        command: String,
        /// The letter.
        letter: char,
    },
    /// A parameter with no value where the command needs one (`G1 X`).
    #[error("line {line}: {command} parameter {letter} has no value")]
    MissingValue {
        /// Source line.
        line: u32,
        /// The command.
        command: String,
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
        if self.mantissa < 0 {
            out.push('-');
        }
        let abs = self.mantissa.unsigned_abs();
        let div = POW10_U64.get(usize::from(self.scale)).copied().unwrap_or(1);
        let _ = write!(out, "{}", abs / div);
        if self.scale > 0 {
            let width = usize::from(self.scale);
            let _ = write!(out, ".{:0width$}", abs % div);
        }
    }
}

impl std::fmt::Display for Decimal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut s = String::new();
        self.write_canonical(&mut s);
        f.write_str(&s)
    }
}

/// One parameter word: a letter and, unless it is a flag (`G28 X`), a value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Param {
    letter: u8,
    value: Option<Decimal>,
}

impl Param {
    /// The letter, `b'A'`…`b'Z'`.
    pub fn letter(self) -> u8 {
        self.letter
    }
    /// The value, if any.
    pub fn value(self) -> Option<Decimal> {
        self.value
    }
}

const EMPTY_PARAM: Param = Param {
    letter: 0,
    value: None,
};

/// One parsed command. Small and `Copy`: the parser allocates nothing per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Command {
    letter: u8,
    code: u16,
    params: [Param; MAX_PARAMS],
    len: u8,
    text_argument: bool,
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
        self.param(letter)
            .and_then(|p| p.value)
            .map(Decimal::to_f64)
    }
    /// The command word, e.g. `G1`.
    pub fn name(&self) -> String {
        format!("{}{}", char::from(self.letter), self.code)
    }

    /// Appends the canonical text form (without line ending).
    pub fn write_canonical(&self, out: &mut String) {
        out.push(char::from(self.letter));
        let _ = write!(out, "{}", self.code);
        let mut sorted = self.params;
        let n = usize::from(self.len);
        if let Some(used) = sorted.get_mut(..n) {
            used.sort_unstable_by_key(|p| canonical_rank(p.letter));
            for p in used.iter() {
                out.push(' ');
                out.push(char::from(p.letter));
                if let Some(v) = p.value {
                    v.write_canonical(out);
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
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }
    fn column(&self) -> usize {
        self.pos + 1
    }
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

    /// Reads up to `max` digits into `acc`; returns how many were read.
    fn digits(&mut self, acc: &mut u64, limit: u32) -> Result<u32, GcodeError> {
        let mut n = 0u32;
        while let Some(b @ b'0'..=b'9') = self.peek() {
            n += 1;
            if n > limit {
                return Err(GcodeError::NumberTooLong {
                    line: self.line,
                    column: self.column(),
                });
            }
            *acc = *acc * 10 + u64::from(b - b'0');
            self.pos += 1;
        }
        Ok(n)
    }

    fn number(&mut self) -> Result<Decimal, GcodeError> {
        let start = self.column();
        let bad = GcodeError::BadNumber {
            line: self.line,
            column: start,
        };
        let negative = self.peek() == Some(b'-');
        if negative {
            self.pos += 1;
        }
        let mut acc = 0u64;
        let int_digits = self.digits(&mut acc, MAX_DIGITS)?;
        let mut frac_digits = 0u32;
        if self.peek() == Some(b'.') {
            self.pos += 1;
            frac_digits = self.digits(&mut acc, MAX_DIGITS - int_digits)?;
            if frac_digits > u32::from(MAX_DECIMALS) {
                return Err(GcodeError::NumberTooLong {
                    line: self.line,
                    column: start,
                });
            }
        }
        if int_digits + frac_digits == 0 {
            return Err(match self.peek() {
                Some(b @ b'a'..=b'z') => GcodeError::Lowercase {
                    line: self.line,
                    column: self.column(),
                    byte: b,
                },
                _ => bad,
            });
        }
        // `0x1F`: hex is a `strtof` reading; Marlin stops at the `x`.
        if matches!(self.peek(), Some(b'x' | b'X')) && int_digits == 1 && acc == 0 {
            return Err(bad);
        }
        let magnitude = i64::try_from(acc).map_err(|_| bad.clone())?;
        let mantissa = if negative { -magnitude } else { magnitude };
        let scale = u8::try_from(frac_digits).map_err(|_| bad.clone())?;
        Decimal::new(mantissa, scale).ok_or(bad)
    }
}

/// Parses one line (without its line ending). `Ok(None)` for blank and comment-only lines.
#[expect(clippy::too_many_lines, reason = "one pass over the grammar, in order")]
pub fn parse_line(raw: &[u8], line: u32) -> Result<Option<Command>, GcodeError> {
    if raw.len() > MAX_LINE_LEN {
        return Err(GcodeError::LineTooLong {
            line,
            len: raw.len(),
        });
    }
    if let Some(i) = raw.iter().position(|&b| !(0x20..0x7f).contains(&b)) {
        let column = i + 1;
        let byte = raw.get(i).copied().unwrap_or(0);
        return Err(match byte {
            0 => GcodeError::Nul { line, column },
            0x80.. => GcodeError::NonAscii { line, column, byte },
            _ => GcodeError::ControlByte { line, column, byte },
        });
    }
    let active = match memchr::memchr(b';', raw) {
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
        return Ok(None);
    };
    if !matches!(letter, b'G' | b'M' | b'T') {
        return Err(cur.bad_word_start(letter));
    }
    cur.pos += 1;
    let mut code = 0u64;
    let code_digits = cur
        .digits(&mut code, 4)
        .map_err(|_| GcodeError::BadNumber {
            line,
            column: cur.column(),
        })?;
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
    let mut cmd = Command {
        letter,
        code,
        params: [EMPTY_PARAM; MAX_PARAMS],
        len: 0,
        text_argument: false,
    };
    if spec.is_some_and(|s| s.text) {
        cmd.text_argument = true;
        return Ok(Some(cmd));
    }
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
                    command: cmd.name(),
                    letter: char::from(b),
                });
            }
            if value.is_none() && s.flags & bit == 0 {
                return Err(GcodeError::MissingValue {
                    line,
                    command: cmd.name(),
                    letter: char::from(b),
                });
            }
        }
        let slot = cmd
            .params
            .get_mut(usize::from(cmd.len))
            .ok_or(GcodeError::TooManyParameters { line })?;
        *slot = Param { letter: b, value };
        cmd.len += 1;
    }
    Ok(Some(cmd))
}

/// The streaming parser: feed it chunks, it calls back once per non-blank line.
#[derive(Debug, Default)]
pub struct Parser {
    carry: Vec<u8>,
    carry_len: usize,
    line: u32,
    bytes: u64,
}

impl Parser {
    /// A parser at the start of a program.
    pub fn new() -> Self {
        Self {
            carry: Vec::with_capacity(MAX_LINE_LEN + 1),
            carry_len: 0,
            line: 0,
            bytes: 0,
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
        F: FnMut(u32, Result<Command, GcodeError>),
    {
        self.line = self.line.saturating_add(1);
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        match parse_line(raw, self.line) {
            Ok(Some(cmd)) => sink(self.line, Ok(cmd)),
            Ok(None) => {}
            Err(e) => sink(self.line, Err(e)),
        }
    }

    fn emit_carry<F>(&mut self, sink: &mut F)
    where
        F: FnMut(u32, Result<Command, GcodeError>),
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
        F: FnMut(u32, Result<Command, GcodeError>),
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
        F: FnMut(u32, Result<Command, GcodeError>),
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

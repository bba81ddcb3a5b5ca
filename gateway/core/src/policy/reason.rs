//! Why a program is refused: stable machine codes with the evidence (line, value, limit).
//!
//! The codes are part of the gateway's interface (CLI JSON, ledger events, the hub's reports):
//! they are never renamed, only added. `GCODE_*` codes are about the text and the command
//! allowlist, `DS_*` about the design space, `RX_*` about the prescription/policy pairing.

use std::fmt;

use serde::Serialize;

/// A stable reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
#[allow(
    missing_docs,
    reason = "each code is documented by `ReasonCode::describe`"
)]
pub enum ReasonCode {
    GcodeLineTooLong,
    GcodeNul,
    GcodeNonAscii,
    GcodeControlByte,
    GcodeLowercase,
    GcodeExponent,
    GcodeParenComment,
    GcodeLineNumber,
    GcodeChecksum,
    GcodeRepeatedParameter,
    GcodeBadNumber,
    GcodeNumberTooLong,
    GcodeUnknownWord,
    GcodeMissingSpace,
    GcodeUnexpectedParameter,
    GcodeMissingValue,
    GcodeTooManyParameters,
    GcodeTruncated,
    GcodeTooLarge,
    GcodeForbiddenCommand,
    GcodeForbiddenParameter,
    GcodeG92NotE0,
    GcodeModeNotSet,
    DsMoveBeforeHome,
    DsRelativeExtrusion,
    DsOutsideBed,
    DsZBelowBed,
    DsNozzleTempHigh,
    DsNozzleTempLow,
    DsBedTempHigh,
    DsBedTempLow,
    DsColdExtrusion,
    DsPrintSpeedHigh,
    DsPrintSpeedLow,
    DsTravelSpeedHigh,
    DsExtruderSpeedHigh,
    DsOverExtrusion,
    DsPrimeTooLong,
    DsRetractTooDeep,
    DsDwellTooLong,
    DsDwellTotalTooLong,
    DsFanOutOfRange,
    DsTimeAtTempTooLong,
    DsPrintTimeTooLong,
    DsHeaterOnAtEnd,
    DsFirstLayerHeight,
    DsLayerHeight,
    DsTooManyLayers,
    DsHomeMidPrint,
    DsDoseOutOfTolerance,
    DsUnitCount,
    DsUnitDoseOutOfTolerance,
    RxPolicyMismatch,
}

impl ReasonCode {
    /// The code as written in JSON, e.g. `GCODE_LOWERCASE`.
    pub fn as_str(self) -> &'static str {
        self.describe().0
    }

    /// The code and a one-line explanation for people.
    #[expect(clippy::too_many_lines, reason = "one entry per code, a flat table")]
    pub fn describe(self) -> (&'static str, &'static str) {
        match self {
            Self::GcodeLineTooLong => ("GCODE_LINE_TOO_LONG", "line longer than the limit"),
            Self::GcodeNul => ("GCODE_NUL", "NUL byte"),
            Self::GcodeNonAscii => ("GCODE_NON_ASCII", "non-ASCII byte"),
            Self::GcodeControlByte => ("GCODE_CONTROL_BYTE", "control byte"),
            Self::GcodeLowercase => ("GCODE_LOWERCASE", "lowercase letter outside a comment"),
            Self::GcodeExponent => ("GCODE_EXPONENT", "number with an exponent"),
            Self::GcodeParenComment => ("GCODE_PAREN_COMMENT", "parenthesis comment"),
            Self::GcodeLineNumber => ("GCODE_LINE_NUMBER", "N line number in the source"),
            Self::GcodeChecksum => ("GCODE_CHECKSUM", "* checksum in the source"),
            Self::GcodeRepeatedParameter => ("GCODE_REPEATED_PARAMETER", "parameter given twice"),
            Self::GcodeBadNumber => ("GCODE_BAD_NUMBER", "not a plain decimal number"),
            Self::GcodeNumberTooLong => ("GCODE_NUMBER_TOO_LONG", "number with too many digits"),
            Self::GcodeUnknownWord => ("GCODE_UNKNOWN_WORD", "not a G, M or T command word"),
            Self::GcodeMissingSpace => ("GCODE_MISSING_SPACE", "words not separated by a space"),
            Self::GcodeUnexpectedParameter => (
                "GCODE_UNEXPECTED_PARAMETER",
                "parameter the command does not take",
            ),
            Self::GcodeMissingValue => ("GCODE_MISSING_VALUE", "parameter without a value"),
            Self::GcodeTooManyParameters => ("GCODE_TOO_MANY_PARAMETERS", "too many parameters"),
            Self::GcodeTruncated => ("GCODE_TRUNCATED", "program ends inside a line"),
            Self::GcodeTooLarge => ("GCODE_TOO_LARGE", "program larger than the policy allows"),
            Self::GcodeForbiddenCommand => (
                "GCODE_FORBIDDEN_COMMAND",
                "command not on the policy's allowlist",
            ),
            Self::GcodeForbiddenParameter => (
                "GCODE_FORBIDDEN_PARAMETER",
                "parameter the policy does not allow on this command",
            ),
            Self::GcodeG92NotE0 => ("GCODE_G92_NOT_E0", "G92 other than G92 E0"),
            Self::GcodeModeNotSet => (
                "GCODE_MODE_NOT_SET",
                "motion before the program set G21/G90/M82 itself",
            ),
            Self::DsMoveBeforeHome => ("DS_MOVE_BEFORE_HOME", "move before G28 homed all axes"),
            Self::DsRelativeExtrusion => (
                "DS_RELATIVE_EXTRUSION",
                "E given in relative mode (policy requires absolute E)",
            ),
            Self::DsOutsideBed => ("DS_OUTSIDE_BED", "move outside the bed's volume"),
            Self::DsZBelowBed => ("DS_Z_BELOW_BED", "move below the bed surface"),
            Self::DsNozzleTempHigh => ("DS_NOZZLE_TEMP_HIGH", "nozzle temperature above range"),
            Self::DsNozzleTempLow => ("DS_NOZZLE_TEMP_LOW", "nozzle temperature below range"),
            Self::DsBedTempHigh => ("DS_BED_TEMP_HIGH", "bed temperature above range"),
            Self::DsBedTempLow => ("DS_BED_TEMP_LOW", "bed temperature below range"),
            Self::DsColdExtrusion => (
                "DS_COLD_EXTRUSION",
                "extrusion before the nozzle was brought to temperature",
            ),
            Self::DsPrintSpeedHigh => ("DS_PRINT_SPEED_HIGH", "extruding move too fast"),
            Self::DsPrintSpeedLow => ("DS_PRINT_SPEED_LOW", "extruding move too slow"),
            Self::DsTravelSpeedHigh => ("DS_TRAVEL_SPEED_HIGH", "travel move too fast"),
            Self::DsExtruderSpeedHigh => (
                "DS_EXTRUDER_SPEED_HIGH",
                "extruder-only move (retract/prime) too fast",
            ),
            Self::DsOverExtrusion => (
                "DS_OVER_EXTRUSION",
                "more material per mm of path than the process allows",
            ),
            Self::DsPrimeTooLong => ("DS_PRIME_TOO_LONG", "extrusion without motion too long"),
            Self::DsRetractTooDeep => ("DS_RETRACT_TOO_DEEP", "retraction deeper than allowed"),
            Self::DsDwellTooLong => ("DS_DWELL_TOO_LONG", "single dwell too long"),
            Self::DsDwellTotalTooLong => ("DS_DWELL_TOTAL_TOO_LONG", "total dwell too long"),
            Self::DsFanOutOfRange => ("DS_FAN_OUT_OF_RANGE", "fan value outside range"),
            Self::DsTimeAtTempTooLong => (
                "DS_TIME_AT_TEMP_TOO_LONG",
                "nozzle heated longer than the design space allows",
            ),
            Self::DsPrintTimeTooLong => ("DS_PRINT_TIME_TOO_LONG", "estimated print time too long"),
            Self::DsHeaterOnAtEnd => (
                "DS_HEATER_ON_AT_END",
                "program ends with a heater on (truncated or no end sequence)",
            ),
            Self::DsFirstLayerHeight => {
                ("DS_FIRST_LAYER_HEIGHT", "first layer height outside range")
            }
            Self::DsLayerHeight => ("DS_LAYER_HEIGHT", "layer height outside range"),
            Self::DsTooManyLayers => ("DS_TOO_MANY_LAYERS", "more layers than allowed"),
            Self::DsHomeMidPrint => (
                "DS_HOME_MID_PRINT",
                "homing after printing started would drive the nozzle through the part",
            ),
            Self::DsDoseOutOfTolerance => (
                "DS_DOSE_OUT_OF_TOLERANCE",
                "estimated dose per unit outside the prescription's tolerance",
            ),
            Self::DsUnitCount => (
                "DS_UNIT_COUNT",
                "the program prints another number of separate units than prescribed",
            ),
            Self::DsUnitDoseOutOfTolerance => (
                "DS_UNIT_DOSE_OUT_OF_TOLERANCE",
                "one unit's estimated dose outside the prescription's tolerance",
            ),
            Self::RxPolicyMismatch => (
                "RX_POLICY_MISMATCH",
                "prescription names another policy or product",
            ),
        }
    }
}

impl fmt::Display for ReasonCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A value or a limit in a reason.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Evidence {
    /// A number.
    Num(f64),
    /// An inclusive range `[min, max]`.
    Range(f64, f64),
    /// Text (a command word, a parser message).
    Text(String),
}

impl fmt::Display for Evidence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Num(v) => write!(f, "{}", round6(*v)),
            Self::Range(a, b) => write!(f, "{} … {}", round6(*a), round6(*b)),
            Self::Text(t) => f.write_str(t),
        }
    }
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// One reason a program is refused.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Reason {
    /// Stable code.
    pub code: ReasonCode,
    /// Source line, where one applies.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// What was found.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value: Option<Evidence>,
    /// What the policy or prescription allows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<Evidence>,
}

impl Reason {
    /// A reason with a code only.
    pub fn new(code: ReasonCode) -> Self {
        Self {
            code,
            line: None,
            value: None,
            limit: None,
        }
    }
    /// Sets the line.
    #[must_use]
    pub fn at(mut self, line: u32) -> Self {
        self.line = Some(line);
        self
    }
    /// Sets the value.
    #[must_use]
    pub fn value(mut self, v: Evidence) -> Self {
        self.value = Some(v);
        self
    }
    /// Sets the limit.
    #[must_use]
    pub fn limit(mut self, l: Evidence) -> Self {
        self.limit = Some(l);
        self
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (code, what) = self.code.describe();
        write!(f, "{code}")?;
        if let Some(line) = self.line {
            write!(f, " at line {line}")?;
        }
        write!(f, ": {what}")?;
        if let Some(v) = &self.value {
            write!(f, "; found {v}")?;
        }
        if let Some(l) = &self.limit {
            write!(f, "; allowed {l}")?;
        }
        Ok(())
    }
}

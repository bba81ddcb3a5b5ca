//! The printer link as a sans-IO state machine: exactly-once streaming of a verified program to a
//! Marlin-style firmware, with live temperature monitoring and a firmware identity check.
//!
//! Owns the serial line protocol (handshake, `M115` capabilities, line numbers and checksums,
//! windowed sending, resends, busy/wait, timeouts, `M400`+`M114` checkpoints, the stop path) and
//! the typed events and outcome that the ledger records. It does **no I/O**: bytes read from the
//! port and the current time go in ([`Streamer::handle_input`], [`Streamer::handle_timeout`]);
//! bytes to write, events and the next deadline come out. Opening the port, DTR resets and the
//! clock belong to the daemon's `serial` adapter. The state diagram is in `STATE.md` beside this
//! file.
//!
//! Design reasons:
//! - Each command is re-emitted from its canonical text with our own line number and checksum;
//!   source bytes never reach the printer.
//! - Marlin accepts line `n` only right after line `n-1`, so line numbers, not ok-counting, are the
//!   exactly-once guarantee; the streamer must therefore never renumber, never skip a number and
//!   always go back to exactly the line the firmware asks for.
//! - An `ok` may be lost or stale, so completion is decided by a final `M400`+`M114` checkpoint
//!   whose reported position and extruder value must equal the virtual print's.

mod firmware;
mod frame;
mod monitor;
mod reply;
mod streamer;

pub use firmware::{Capabilities, FirmwareIdentity, answer_digest};
pub use frame::{CanonicalCommand, MAX_COMMAND_LEN, checksum, frame};
pub use monitor::{MonitorLimits, TemperatureMonitor};
pub use reply::{MAX_REPLY_LEN, Position, Reply, Temperatures, parse_reply};
pub use streamer::{
    FirmwareBaseline, FirmwareCheck, MAX_PROGRAM_COMMANDS, Progress, StreamCommand, StreamConfig,
    StreamProgram, Streamer, Transmit,
};

#[cfg(test)]
mod tests;

/// Why a program could not be prepared for streaming.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamError {
    /// A command is not in canonical form.
    #[error("command {command:?} is not canonical: {reason}")]
    NotCanonical {
        /// The command (truncated).
        command: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The program has more commands than [`MAX_PROGRAM_COMMANDS`].
    #[error("program has {commands} commands; at most {max}")]
    ProgramTooLarge {
        /// Its size.
        commands: usize,
        /// The cap.
        max: usize,
    },
    /// The program has no commands.
    #[error("program is empty")]
    EmptyProgram,
}

/// A heater the monitor watches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Heater {
    /// The hot end (nozzle / syringe).
    Hotend,
    /// The bed.
    Bed,
}

/// Which identity answer differed from the baseline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum IdentityQuery {
    /// `M115` (firmware name, version, capabilities).
    M115,
    /// `M503` (stored settings).
    M503,
}

/// Why a job was aborted, with the evidence. Stable codes: [`AbortReason::code`].
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "code", rename_all = "snake_case")]
pub enum AbortReason {
    /// No `ok` to the `M110` handshake after every attempt.
    NoHandshake {
        /// Attempts made.
        attempts: u32,
    },
    /// The firmware's `M115` or `M503` answer differs from the commissioning baseline.
    FirmwareMismatch {
        /// Which answer.
        query: IdentityQuery,
        /// Baseline digest, hex.
        expected_sha256: String,
        /// Received digest, hex.
        got_sha256: String,
    },
    /// The firmware asked for the same line more often than allowed.
    ResendLimitExceeded {
        /// The line number.
        line: u32,
        /// How often it was requested.
        attempts: u32,
    },
    /// The firmware asked for a line that is not in flight (already acknowledged, or never sent).
    ResendOutOfWindow {
        /// Requested line.
        requested: u32,
        /// Oldest unacknowledged line.
        oldest_unacked: u32,
        /// Next line to be sent.
        next_to_send: u32,
    },
    /// While recovering from a resend request for `expected`, the firmware asked for another line.
    ConflictingResend {
        /// The line being recovered.
        expected: u32,
        /// The line asked for.
        requested: u32,
    },
    /// An `ok N` named a line that was never sent (or discarded by the firmware).
    AckForUnsentLine {
        /// The line in the `ok`.
        line: u32,
        /// Highest line sent and not discarded.
        highest_sent: Option<u32>,
    },
    /// Nothing from the firmware while lines were in flight, after every probe.
    Unresponsive {
        /// Oldest unacknowledged line.
        line: u32,
        /// Silence before the last probe, ms.
        waited_ms: u64,
        /// Probes sent.
        probes: u32,
    },
    /// The port closed or failed.
    Disconnected {
        /// Program commands acknowledged before.
        commands_acked: usize,
    },
    /// The firmware rebooted (`start`) during the job.
    FirmwareRestarted {
        /// Program commands acknowledged before.
        commands_acked: usize,
    },
    /// The firmware reported a fatal error (kill, thermal runaway, MINTEMP…).
    FirmwareHalted {
        /// Its message (at most 120 characters).
        message: String,
    },
    /// A reply line longer than [`MAX_REPLY_LEN`].
    ReplyTooLong {
        /// Bytes seen before giving up.
        len: usize,
    },
    /// A checkpoint's `M114` position differs from the virtual print's.
    CheckpointMismatch {
        /// Program command index the checkpoint follows.
        after_command: usize,
        /// Its line in the source G-code.
        source_line: u32,
        /// Axis that differs (`X`, `Y`, `Z`, `E`).
        axis: char,
        /// Expected value, mm.
        expected: f64,
        /// Reported value, mm.
        reported: f64,
    },
    /// Every line was acknowledged but a checkpoint's `M114` never answered with a position.
    CheckpointUnanswered {
        /// Program command index the checkpoint follows.
        after_command: usize,
    },
    /// A heater stayed outside its design-space band (plus tolerance) longer than the grace time.
    TemperatureDeviation {
        /// Which heater.
        heater: Heater,
        /// Last reading, °C.
        measured_c: f64,
        /// Band minimum, °C.
        min_c: f64,
        /// Band maximum, °C.
        max_c: f64,
        /// Tolerance applied, °C.
        tolerance_c: f64,
        /// How long the deviation lasted, ms.
        lasted_ms: u64,
    },
    /// A heater did not reach its band in time.
    HeatupTimeout {
        /// Which heater.
        heater: Heater,
        /// Its set-point, °C.
        target_c: f64,
        /// Last reading, °C.
        last_c: Option<f64>,
        /// Time waited, ms.
        waited_ms: u64,
    },
    /// No temperature report for too long while a heater was monitored.
    TemperatureReportsStopped {
        /// Silence, ms.
        silent_ms: u64,
    },
    /// An operator (or the daemon) stopped the job.
    Stopped,
}

impl AbortReason {
    /// The stable code of this reason (as in the ledger and `--json`).
    pub fn code(&self) -> &'static str {
        match self {
            Self::NoHandshake { .. } => "no_handshake",
            Self::FirmwareMismatch { .. } => "firmware_mismatch",
            Self::ResendLimitExceeded { .. } => "resend_limit_exceeded",
            Self::ResendOutOfWindow { .. } => "resend_out_of_window",
            Self::ConflictingResend { .. } => "conflicting_resend",
            Self::AckForUnsentLine { .. } => "ack_for_unsent_line",
            Self::Unresponsive { .. } => "unresponsive",
            Self::Disconnected { .. } => "disconnected",
            Self::FirmwareRestarted { .. } => "firmware_restarted",
            Self::FirmwareHalted { .. } => "firmware_halted",
            Self::ReplyTooLong { .. } => "reply_too_long",
            Self::CheckpointMismatch { .. } => "checkpoint_mismatch",
            Self::CheckpointUnanswered { .. } => "checkpoint_unanswered",
            Self::TemperatureDeviation { .. } => "temperature_deviation",
            Self::HeatupTimeout { .. } => "heatup_timeout",
            Self::TemperatureReportsStopped { .. } => "temperature_reports_stopped",
            Self::Stopped => "stopped",
        }
    }
}

/// What a finished stream achieved.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct CompletionSummary {
    /// Program commands executed (each exactly once).
    pub commands: usize,
    /// Lines transmitted, retransmissions included.
    pub lines_transmitted: u64,
    /// Resend requests honoured.
    pub resends: u64,
    /// Checkpoints passed (the final one included).
    pub checkpoints: u32,
}

/// Something that happened on the link, for the ledger and the operator.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The firmware answered the `M110` handshake.
    Connected {
        /// Attempts it took.
        attempts: u32,
    },
    /// `M115` and `M503` were read and hashed (and matched the baseline, when one is configured).
    FirmwareIdentified {
        /// `FIRMWARE_NAME:`.
        firmware_name: String,
        /// `ADVANCED_OK`.
        advanced_ok: bool,
        /// `AUTOREPORT_TEMP`.
        autoreport_temp: bool,
        /// `EMERGENCY_PARSER`.
        emergency_parser: bool,
        /// `M115` digest, hex.
        m115_sha256: String,
        /// `M503` digest, hex.
        m503_sha256: String,
        /// Whether a commissioning baseline was compared.
        baseline_checked: bool,
    },
    /// Program streaming began.
    StreamingStarted {
        /// Lines allowed in flight.
        lines_in_flight: usize,
    },
    /// The firmware asked for a line again.
    ResendRequested {
        /// The line.
        line: u32,
        /// How often this line has been asked for.
        attempt: u32,
    },
    /// No answer in time; the oldest unacknowledged line was sent again as a probe.
    Timeout {
        /// The line.
        line: u32,
    },
    /// A checkpoint's reported position matched the virtual print.
    CheckpointPassed {
        /// Program command index it follows.
        after_command: usize,
        /// Reported position.
        x: f64,
        /// Reported position.
        y: f64,
        /// Reported position.
        z: f64,
        /// Reported extruder value.
        e: f64,
    },
    /// Every command ran exactly once and the final checkpoint matched.
    Completed(CompletionSummary),
    /// The job was aborted.
    Aborted(AbortReason),
}

//! Printing one verified program: the gateway configuration's `[printer]` facts turned into a
//! stream configuration, the port opened through [`crate::serial`], and the streamer driven to
//! its outcome while every [`StreamEvent`] goes to the caller (the ledger, a progress bar).
//!
//! This is the one function both `dosegate run` (a job from the hub) and `dosegate print` (by
//! hand) call, so the two cannot drift apart. It accepts only proof types (`VerifiedJob`,
//! `VerifiedProgram`): an unchecked program does not compile in here. It decides nothing about
//! the protocol (that is `dosegate_core::stream`) and records nothing itself.

use std::future::Future;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use dosegate_core::config;
use dosegate_core::job::VerifiedJob;
use dosegate_core::policy::{Policy, VerifiedProgram};
use dosegate_core::stream::{
    AbortReason, CompletionSummary, FirmwareBaseline, FirmwareCheck, MonitorLimits, Progress,
    StreamConfig, StreamError, StreamEvent, StreamProgram, Streamer,
};

use crate::serial::{self, SerialError, SerialSettings};

/// Smallest receive buffer the streamer is configured for, bytes.
pub const RX_BUFFER_BYTES_MIN: u32 = config::RX_BUFFER_BYTES_MIN;
/// Largest receive buffer the streamer is configured for, bytes.
pub const RX_BUFFER_BYTES_MAX: u32 = config::RX_BUFFER_BYTES_MAX;

/// Everything about the printer a print needs: the port, the firmware's receive buffer, the
/// window and the commissioning baseline.
#[derive(Debug, Clone)]
pub struct PrinterSettings {
    /// How to open the port.
    pub serial: SerialSettings,
    /// The firmware's receive buffer, bytes (Marlin's `RX_BUFFER_SIZE`); clamped to
    /// [`RX_BUFFER_BYTES_MIN`]`..=`[`RX_BUFFER_BYTES_MAX`].
    pub rx_buffer_bytes: u32,
    /// Most lines in flight when the firmware reports `ADVANCED_OK`.
    pub max_lines_in_flight: usize,
    /// The identity check after the handshake.
    pub firmware: FirmwareCheck,
}

impl PrinterSettings {
    /// The settings a validated gateway configuration gives: its port and baud rate, reset on
    /// connect, its receive buffer, and its firmware baseline (a check of each digest it holds;
    /// the digests are only recorded when it holds none).
    pub fn from_config(printer: &config::Printer) -> Self {
        Self {
            serial: SerialSettings {
                baud: printer.baud,
                ..SerialSettings::new(PathBuf::from(&printer.serial))
            },
            rx_buffer_bytes: printer.rx_buffer_bytes,
            max_lines_in_flight: StreamConfig::default().max_lines_in_flight,
            firmware: FirmwareCheck::from_baseline(FirmwareBaseline {
                m115_sha256: printer.m115_sha256,
                m503_sha256: printer.m503_sha256,
            }),
        }
    }

    /// The stream configuration for a program checked against `policy`: the byte window is the
    /// receive buffer less one, the temperature bands and their tolerance, grace and heat-up
    /// times come from the policy.
    pub fn stream_config(&self, policy: &Policy) -> StreamConfig {
        let rx = self
            .rx_buffer_bytes
            .clamp(RX_BUFFER_BYTES_MIN, RX_BUFFER_BYTES_MAX);
        StreamConfig {
            max_lines_in_flight: self.max_lines_in_flight.max(1),
            max_bytes_in_flight: usize::try_from(rx - 1).unwrap_or(127),
            firmware: self.firmware.clone(),
            monitor: MonitorLimits::from_policy(policy),
            ..StreamConfig::default()
        }
    }
}

/// How a print ended, once the port was open and the streamer ran.
#[derive(Debug, Clone, PartialEq)]
pub struct PrintOutcome {
    /// Completed (every command exactly once, final checkpoint matched) or aborted, with the
    /// evidence. Either is also the last [`StreamEvent`] the caller saw.
    pub result: Result<CompletionSummary, AbortReason>,
    /// From opening the stream to its end.
    pub elapsed: Duration,
    /// SHA-256 of the program's canonical commands.
    pub program_sha256: [u8; 32],
}

/// Why a print could not start.
#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    /// The verified program cannot be streamed (a command not in canonical form; too large).
    #[error("program is not streamable: {0}")]
    NotStreamable(#[from] StreamError),
    /// The port could not be opened.
    #[error(transparent)]
    Port(#[from] SerialError),
}

impl PrintError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotStreamable(_) => "not_streamable",
            Self::Port(_) => "port_unavailable",
        }
    }
}

/// Prints a verified job: [`print_program`] with the job's checked program.
pub async fn print_job(
    settings: &PrinterSettings,
    job: &VerifiedJob,
    policy: &Policy,
    on_event: impl FnMut(&StreamEvent, Progress),
    stop: impl Future<Output = ()>,
) -> Result<PrintOutcome, PrintError> {
    print_program(settings, job.program(), policy, on_event, stop).await
}

/// Opens the printer and streams `program` until it completes or aborts. `on_event` sees every
/// event in order (connected, firmware identified, streaming started, resends, timeouts,
/// checkpoints, then completed or aborted) with the progress at that moment; `stop` resolving
/// stops the print through the stop path (`M112` to the emergency parser, or a board reset).
pub async fn print_program(
    settings: &PrinterSettings,
    program: &VerifiedProgram,
    policy: &Policy,
    on_event: impl FnMut(&StreamEvent, Progress),
    stop: impl Future<Output = ()>,
) -> Result<PrintOutcome, PrintError> {
    let stream_program = StreamProgram::from_verified(program)?;
    let cfg = settings.stream_config(policy);
    let mut port = serial::open(&settings.serial).await?;
    let start = Instant::now();
    let mut streamer = Streamer::new(stream_program, cfg, start.elapsed());
    let result = serial::run(&mut port, &mut streamer, start, on_event, stop).await;
    Ok(PrintOutcome {
        result,
        elapsed: start.elapsed(),
        program_sha256: *program.sha256(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: &str = r#"
gateway_id = "spoke-0001"
[paths]
state_dir = "/var/lib/dosegate"
[printer]
serial = "/dev/ttyACM0"
baud = 250000
rx_buffer_bytes = 1024
m503_sha256 = "0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f"
[tpm]
"#;

    fn policy() -> Policy {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../policies/fdm-hctz-printlet.toml");
        Policy::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap()
    }

    #[test]
    fn the_configuration_sets_the_byte_window_and_the_firmware_check() {
        let cfg = config::Config::parse(CONFIG).unwrap();
        let settings = PrinterSettings::from_config(&cfg.printer);
        assert_eq!(settings.serial.path, PathBuf::from("/dev/ttyACM0"));
        assert_eq!(settings.serial.baud, 250_000);
        let stream = settings.stream_config(&policy());
        assert_eq!(stream.max_bytes_in_flight, 1023);
        assert_eq!(
            stream.firmware,
            FirmwareCheck::Baseline(FirmwareBaseline {
                m115_sha256: None,
                m503_sha256: Some([0x0f; 32]),
            })
        );
        assert_eq!(stream.monitor, MonitorLimits::from_policy(&policy()));
    }

    #[test]
    fn without_a_baseline_the_digests_are_recorded_and_the_window_is_marlins_default() {
        let text = CONFIG.replace("rx_buffer_bytes = 1024\n", "").replace(
            "m503_sha256 = \"0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f0f\"\n",
            "",
        );
        let cfg = config::Config::parse(&text).unwrap();
        let stream = PrinterSettings::from_config(&cfg.printer).stream_config(&policy());
        assert_eq!(stream.max_bytes_in_flight, 127);
        assert_eq!(stream.firmware, FirmwareCheck::RecordOnly);
    }
}

//! The serial adapter: the only module that opens the printer's port.
//!
//! Owns opening (exclusive lock, low-latency mode, DTR reset on connect, retries while the port
//! is absent) and the short loop that moves bytes and time between the port and the sans-IO
//! [`Streamer`]. It does not interpret a byte of the protocol: that is `dosegate_core::stream`.
//! A printer that disappears mid-job ends the job (the streamer aborts it); the reconnect policy
//! applies only to opening, so a job is never resumed silently.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use dosegate_core::stream::{
    AbortReason, CompletionSummary, Progress, StreamEvent, Streamer, Transmit,
};
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};
use tokio_serial::{SerialPort as _, SerialPortBuilderExt as _, SerialStream};
use tracing::{debug, info, warn};

/// How to open the port.
#[derive(Debug, Clone)]
pub struct SerialSettings {
    /// The device (`/dev/ttyACM0`, a pty, a udev symlink).
    pub path: PathBuf,
    /// Baud rate (Marlin's default is 115200).
    pub baud: u32,
    /// Pulse DTR after opening so the board starts from a known state.
    pub reset_on_connect: bool,
    /// Opening attempts while the device is absent or busy.
    pub open_attempts: u32,
    /// Pause between attempts.
    pub retry_delay: Duration,
}

impl SerialSettings {
    /// Defaults for `path`: 115200 baud, reset on connect, 5 attempts 1 s apart.
    pub fn new(path: impl Into<PathBuf>) -> Self {
        Self {
            path: path.into(),
            baud: 115_200,
            reset_on_connect: true,
            open_attempts: 5,
            retry_delay: Duration::from_secs(1),
        }
    }
}

/// Why the port could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SerialError {
    /// Opening failed on every attempt.
    #[error("cannot open {path}: {source} (after {attempts} attempts)")]
    Open {
        /// The device.
        path: PathBuf,
        /// Attempts made.
        attempts: u32,
        /// The last error.
        #[source]
        source: tokio_serial::Error,
    },
}

/// A byte link to the printer plus its reset line: the real port, or a fake in tests.
pub trait PrinterLink: AsyncRead + AsyncWrite + Unpin {
    /// Pulses DTR (most boards reset on it). Errors are reported, not fatal: a pty has no DTR.
    fn pulse_reset(&mut self) -> std::io::Result<()>;
}

impl PrinterLink for SerialStream {
    fn pulse_reset(&mut self) -> std::io::Result<()> {
        self.write_data_terminal_ready(false)?;
        std::thread::sleep(Duration::from_millis(100));
        self.write_data_terminal_ready(true)?;
        Ok(())
    }
}

/// Opens the printer port: exclusive, low latency, reset on connect.
pub async fn open(settings: &SerialSettings) -> Result<SerialStream, SerialError> {
    let mut attempt = 0;
    let mut port = loop {
        attempt += 1;
        match tokio_serial::new(settings.path.to_string_lossy(), settings.baud).open_native_async()
        {
            Ok(p) => break p,
            Err(source) if attempt >= settings.open_attempts.max(1) => {
                return Err(SerialError::Open {
                    path: settings.path.clone(),
                    attempts: attempt,
                    source,
                });
            }
            Err(e) => {
                warn!(path = %settings.path.display(), attempt, error = %e, "printer port not available, retrying");
                tokio::time::sleep(settings.retry_delay).await;
            }
        }
    };
    if let Err(e) = port.set_exclusive(true) {
        warn!(error = %e, "could not lock the printer port exclusively");
    }
    set_low_latency(&settings.path);
    if settings.reset_on_connect {
        if let Err(e) = port.pulse_reset() {
            debug!(error = %e, "no DTR line to reset the board (a pty?)");
        }
    }
    info!(path = %settings.path.display(), baud = settings.baud, "printer port open");
    Ok(port)
}

/// USB-serial bridges batch replies for up to 16 ms (the FTDI latency timer); one in-flight line
/// per reply makes that the link's speed limit. Set it to 1 ms where the driver exposes it.
fn set_low_latency(path: &Path) {
    let real = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
    let Some(name) = real.file_name().and_then(|n| n.to_str()) else {
        return;
    };
    let knob = PathBuf::from("/sys/bus/usb-serial/devices")
        .join(name)
        .join("latency_timer");
    if knob.exists() {
        match std::fs::write(&knob, "1") {
            Ok(()) => info!(device = name, "USB latency timer set to 1 ms"),
            Err(e) => warn!(device = name, error = %e, "could not set the USB latency timer"),
        }
    }
}

/// Drives `streamer` over `link` until it ends. `observe` sees every event and the progress;
/// `stop` resolving asks for a stop (the stop path bypasses the queue).
pub async fn run<L: PrinterLink>(
    link: &mut L,
    streamer: &mut Streamer,
    start: Instant,
    mut observe: impl FnMut(&StreamEvent, Progress),
    stop: impl std::future::Future<Output = ()>,
) -> Result<CompletionSummary, AbortReason> {
    tokio::pin!(stop);
    let mut stop_requested = false;
    let mut buf = vec![0u8; 4096];
    let mut connected = true;
    loop {
        while let Some(t) = streamer.poll_transmit() {
            let result = match t {
                Transmit::Line(bytes) | Transmit::Emergency(bytes) => write_all(link, &bytes).await,
                Transmit::ResetBoard => link.pulse_reset(),
            };
            if let Err(e) = result {
                warn!(error = %e, "printer link write failed");
                if connected {
                    connected = false;
                    streamer.handle_disconnect(start.elapsed());
                }
            }
        }
        while let Some(e) = streamer.poll_event() {
            observe(&e, streamer.progress());
        }
        if let Some(outcome) = streamer.outcome() {
            return outcome.clone();
        }
        let deadline = streamer
            .poll_timeout()
            .map(|t| tokio::time::Instant::from_std(start + t));
        let sleep = async {
            match deadline {
                Some(d) => tokio::time::sleep_until(d).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            r = link.read(&mut buf) => {
                let now = start.elapsed();
                match r {
                    Ok(0) | Err(_) => {
                        connected = false;
                        streamer.handle_disconnect(now);
                    }
                    Ok(n) => streamer.handle_input(buf.get(..n).unwrap_or_default(), now),
                }
            }
            () = sleep => streamer.handle_timeout(start.elapsed()),
            () = &mut stop, if !stop_requested => {
                stop_requested = true;
                streamer.stop(start.elapsed());
            }
        }
    }
}

/// Writes go straight to the descriptor; no flush, which on a serial port means `tcdrain` and
/// would block the thread until the UART has sent every byte.
async fn write_all<L: PrinterLink>(link: &mut L, bytes: &[u8]) -> std::io::Result<()> {
    link.write_all(bytes).await
}

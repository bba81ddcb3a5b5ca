//! The balance adapter: MT-SICS over a serial line (USB-serial or RS-232, 9600 8N1 by default on
//! Mettler Toledo balances). It opens the port in raw mode, sends `S` or `SI`, reads one CR LF
//! line (bounded) and hands it to the core's codec (`dosegate_core::instrument`).
//!
//! It owns the port and the read bounds; it does not judge the mass — the release decision does.

use std::io::{Read, Write};
use std::path::Path;

use dosegate_core::instrument::{
    Balance, MAX_RESPONSE_LEN, MtSicsError, WeighMode, Weighing, parse_weight_response,
};

/// Why a weighing failed.
#[derive(Debug, thiserror::Error)]
pub enum BalanceError {
    /// The port could not be opened or configured.
    #[error("serial port {path}: {source}")]
    Open {
        /// The device.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Reading or writing the line failed (including a timeout or the peer closing it).
    #[error("serial I/O: {0}")]
    Io(#[from] std::io::Error),
    /// The balance closed the line before a full response.
    #[error("balance closed the line mid-response")]
    Closed,
    /// The response exceeded [`MAX_RESPONSE_LEN`].
    #[error("response longer than {MAX_RESPONSE_LEN} bytes")]
    TooLong,
    /// The balance answered with an error or something unreadable.
    #[error(transparent)]
    Protocol(#[from] MtSicsError),
}

/// Opens a serial device for MT-SICS: raw mode, 9600 baud, 8N1.
pub fn open_serial(path: &Path) -> Result<std::fs::File, BalanceError> {
    let open_err = |source: std::io::Error| BalanceError::Open {
        path: path.display().to_string(),
        source,
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(open_err)?;
    let mut t = rustix::termios::tcgetattr(&file).map_err(|e| open_err(e.into()))?;
    t.make_raw();
    // A pty ignores the speed; a real port gets 9600 baud.
    let _ = t.set_speed(9600);
    rustix::termios::tcsetattr(&file, rustix::termios::OptionalActions::Now, &t)
        .map_err(|e| open_err(e.into()))?;
    Ok(file)
}

/// An MT-SICS balance on any byte link (a serial port, or an in-process simulator).
#[derive(Debug)]
pub struct MtSicsBalance<L> {
    link: L,
}

impl<L: Read + Write> MtSicsBalance<L> {
    /// Talks MT-SICS over `link`.
    pub fn new(link: L) -> Self {
        MtSicsBalance { link }
    }

    fn read_line(&mut self) -> Result<String, BalanceError> {
        let mut line = Vec::with_capacity(32);
        let mut byte = [0u8; 1];
        loop {
            if self.link.read(&mut byte)? == 0 {
                return Err(BalanceError::Closed);
            }
            if byte[0] == b'\n' {
                break;
            }
            if line.len() > MAX_RESPONSE_LEN {
                return Err(BalanceError::TooLong);
            }
            line.push(byte[0]);
        }
        Ok(String::from_utf8_lossy(&line).into_owned())
    }
}

impl<L: Read + Write> Balance for MtSicsBalance<L> {
    type Error = BalanceError;

    fn weigh(&mut self, mode: WeighMode) -> Result<Weighing, BalanceError> {
        self.link.write_all(mode.command())?;
        self.link.flush()?;
        let line = self.read_line()?;
        Ok(parse_weight_response(&line)?)
    }
}

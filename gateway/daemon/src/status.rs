//! The running gateway's status file, `<state_dir>/status.json`: what `dosegate run` last knew
//! about its links, written atomically, read (bounded) by `dosegate health` to decide whether a
//! boot is good.
//!
//! This module owns the file's schema and the atomic write (temporary file, fsync, rename, fsync
//! of the folder) and the bounded read. It does not decide health (that is `cmd::health`), and it
//! does not refresh the file on a timer (that is the caller's loop).

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The status file's name in the state directory.
pub const STATUS_FILE: &str = "status.json";
/// Largest status file read, in bytes.
pub const MAX_STATUS_BYTES: u64 = 4096;
/// Longest `state` string accepted.
pub const MAX_STATE_LEN: usize = 64;

/// What the running gateway reports about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayStatus {
    /// The process id of `dosegate run`.
    pub pid: u32,
    /// When this status was written, in milliseconds since the Unix epoch.
    pub updated_ms: u64,
    /// The configuration names a hub broker (`[fleet]`); a box without one (a bench unit, a
    /// QEMU test box) is not expected to connect.
    pub fleet_configured: bool,
    /// The MQTT link to the hub's broker is up (TLS session and CONNACK).
    pub broker_connected: bool,
    /// The printer's serial device is present (the USB link is up).
    pub printer_link_up: bool,
    /// The gateway's state in words (e.g. `idle`, `printing`), at most 64 characters.
    pub state: String,
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    /// There is no status file (the gateway has not written one yet).
    #[error("no status file at {path:?}")]
    Missing {
        /// Where it was looked for.
        path: PathBuf,
    },
    /// The file could not be read.
    #[error("cannot read status file {path:?}")]
    Unreadable {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file is larger than [`MAX_STATUS_BYTES`].
    #[error("status file {path:?} is over {MAX_STATUS_BYTES} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
    },
    /// The file is not a status of this schema.
    #[error("status file {path:?} is not valid: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What the parser reported.
        reason: String,
    },
}

impl StatusError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "status-missing",
            Self::Unreadable { .. } => "status-unreadable",
            Self::TooLarge { .. } | Self::Invalid { .. } => "status-invalid",
        }
    }
}

/// Writes `status` to `<state_dir>/status.json` atomically: a temporary file in the same folder
/// (mode 0600), fsync, rename over the old file, fsync of the folder. A reader sees the old or the
/// new status, never a mix.
pub fn write(state_dir: &Path, status: &GatewayStatus) -> io::Result<()> {
    let bytes = serde_json::to_vec(status).map_err(io::Error::other)?;
    let tmp = state_dir.join(format!(".{STATUS_FILE}.{}.tmp", std::process::id()));
    let result = (|| {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, state_dir.join(STATUS_FILE))?;
        File::open(state_dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Reads `<state_dir>/status.json`, at most [`MAX_STATUS_BYTES`].
pub fn read(state_dir: &Path) -> Result<GatewayStatus, StatusError> {
    let path = state_dir.join(STATUS_FILE);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Err(StatusError::Missing { path }),
        Err(source) => return Err(StatusError::Unreadable { path, source }),
    };
    let mut bytes = Vec::new();
    if let Err(source) = file.take(MAX_STATUS_BYTES + 1).read_to_end(&mut bytes) {
        return Err(StatusError::Unreadable { path, source });
    }
    if bytes.len() as u64 > MAX_STATUS_BYTES {
        return Err(StatusError::TooLarge { path });
    }
    let status: GatewayStatus =
        serde_json::from_slice(&bytes).map_err(|e| StatusError::Invalid {
            path: path.clone(),
            reason: e.to_string(),
        })?;
    if status.state.chars().count() > MAX_STATE_LEN {
        return Err(StatusError::Invalid {
            path,
            reason: format!("state is over {MAX_STATE_LEN} characters"),
        });
    }
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status() -> GatewayStatus {
        GatewayStatus {
            pid: 42,
            updated_ms: 1_767_225_600_000,
            fleet_configured: true,
            broker_connected: true,
            printer_link_up: false,
            state: "idle".into(),
        }
    }

    #[test]
    fn writes_atomically_and_reads_back() {
        let dir = tempfile::tempdir().expect("dir");
        write(dir.path(), &status()).expect("write");
        assert_eq!(read(dir.path()).expect("read"), status());
        let mut next = status();
        next.printer_link_up = true;
        write(dir.path(), &next).expect("rewrite");
        assert_eq!(read(dir.path()).expect("read"), next);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .expect("list")
            .map(|e| e.expect("entry").file_name())
            .collect();
        assert_eq!(names, [STATUS_FILE], "no temporary file left behind");
    }

    #[test]
    fn reports_a_missing_file() {
        let dir = tempfile::tempdir().expect("dir");
        let err = read(dir.path()).unwrap_err();
        assert_eq!(err.code(), "status-missing");
    }

    #[test]
    fn refuses_oversized_garbled_or_foreign_content() {
        let dir = tempfile::tempdir().expect("dir");
        let path = dir.path().join(STATUS_FILE);
        std::fs::write(&path, vec![b' '; 4097]).expect("w");
        assert!(matches!(
            read(dir.path()),
            Err(StatusError::TooLarge { .. })
        ));
        std::fs::write(&path, b"{\"pid\":1").expect("w");
        assert_eq!(read(dir.path()).unwrap_err().code(), "status-invalid");
        let extra =
            serde_json::to_string(&status())
                .expect("json")
                .replacen('{', "{\"extra\":1,", 1);
        std::fs::write(&path, extra).expect("w");
        assert_eq!(read(dir.path()).unwrap_err().code(), "status-invalid");
        let mut long = status();
        long.state = "x".repeat(MAX_STATE_LEN + 1);
        std::fs::write(&path, serde_json::to_vec(&long).expect("json")).expect("w");
        assert_eq!(read(dir.path()).unwrap_err().code(), "status-invalid");
    }

    #[test]
    fn write_fails_cleanly_without_the_folder() {
        let dir = tempfile::tempdir().expect("dir");
        let gone = dir.path().join("absent");
        assert!(write(&gone, &status()).is_err());
    }
}

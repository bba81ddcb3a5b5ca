//! The systemd readiness protocol (`sd_notify`): one datagram of `KEY=value` lines to the socket
//! named by `NOTIFY_SOCKET`.
//!
//! This module owns only that datagram. It does not watch the service's health (that is the
//! health unit's job) and sends nothing when the daemon is not run by systemd.

use std::ffi::OsString;
use std::io;
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};

/// Why a notification could not be sent.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// `NOTIFY_SOCKET` is neither an absolute path nor an abstract name (`@…`).
    #[error("NOTIFY_SOCKET={value:?} is not an absolute path or @abstract name")]
    BadSocket {
        /// The value.
        value: String,
    },
    /// The datagram could not be sent.
    #[error("cannot notify systemd at {socket:?}")]
    Send {
        /// The socket.
        socket: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// A state change systemd should know about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Start-up finished: `READY=1`.
    Ready,
    /// Shutting down: `STOPPING=1`.
    Stopping,
}

impl State {
    fn message(self) -> &'static str {
        match self {
            Self::Ready => "READY=1\nSTATUS=running\n",
            Self::Stopping => "STOPPING=1\nSTATUS=stopping\n",
        }
    }
}

/// Sends `state` to the socket named by `socket_env` (the value of `NOTIFY_SOCKET`). Returns
/// `Ok(false)` when there is no socket to notify (not started by systemd).
pub fn notify(socket_env: Option<OsString>, state: State) -> Result<bool, NotifyError> {
    let Some(value) = socket_env else {
        return Ok(false);
    };
    let value = value.to_string_lossy().into_owned();
    let bad = || NotifyError::BadSocket {
        value: value.clone(),
    };
    let addr = if let Some(name) = value.strip_prefix('@') {
        SocketAddr::from_abstract_name(name.as_bytes()).map_err(|_| bad())?
    } else if value.starts_with('/') {
        SocketAddr::from_pathname(&value).map_err(|_| bad())?
    } else {
        return Err(bad());
    };
    let send_err = |source| NotifyError::Send {
        socket: value.clone(),
        source,
    };
    let sock = UnixDatagram::unbound().map_err(send_err)?;
    sock.send_to_addr(state.message().as_bytes(), &addr)
        .map_err(send_err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("dosegate-notify-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn sends_ready_to_a_path_socket() {
        let dir = temp_dir("path");
        let path = dir.join("notify");
        let server = UnixDatagram::bind(&path).expect("bind");
        let sent = notify(Some(path.clone().into_os_string()), State::Ready).expect("sent");
        assert!(sent);
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=running\n");
        std::fs::remove_dir_all(dir).ok();
    }

    #[test]
    fn sends_stopping_to_an_abstract_socket() {
        let name = format!("dosegate-notify-test-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).expect("addr");
        let server = UnixDatagram::bind_addr(&addr).expect("bind");
        assert!(notify(Some(format!("@{name}").into()), State::Stopping).expect("sent"));
        let mut buf = [0u8; 256];
        let n = server.recv(&mut buf).expect("recv");
        assert!(buf[..n].starts_with(b"STOPPING=1\n"));
    }

    #[test]
    fn does_nothing_without_systemd() {
        assert!(!notify(None, State::Ready).expect("no-op"));
    }

    #[test]
    fn refuses_a_relative_socket_name() {
        let err = notify(Some("notify".into()), State::Ready).unwrap_err();
        assert!(matches!(err, NotifyError::BadSocket { value } if value == "notify"));
    }

    #[test]
    fn reports_a_missing_socket() {
        let dir = temp_dir("missing");
        let err = notify(Some(dir.join("absent").into_os_string()), State::Ready).unwrap_err();
        assert!(matches!(err, NotifyError::Send { .. }), "{err}");
        std::fs::remove_dir_all(dir).ok();
    }
}

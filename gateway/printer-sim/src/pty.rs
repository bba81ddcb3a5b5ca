//! Serves a [`Printer`] on a pseudo-terminal in a background thread, in real time.
//!
//! Owns only the byte pump between the pty and the printer and the reply latency (a USB
//! latency timer). Used by the `dosegate-printer-sim` binary and by tests that need a real serial
//! device node; the protocol behaviour is all in [`Printer`].

use std::collections::VecDeque;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::pty::openpty;
use nix::sys::termios::{SetArg, cfmakeraw, tcgetattr, tcsetattr};

use crate::printer::{Executed, Printer, SimConfig};

/// A simulated printer on a pty.
#[derive(Debug)]
pub struct PtyPrinter {
    path: PathBuf,
    stop: Arc<AtomicBool>,
    executed: Arc<Mutex<Vec<Executed>>>,
    disconnected: Arc<AtomicBool>,
    thread: Option<JoinHandle<Result<(), Errno>>>,
}

impl PtyPrinter {
    /// Opens a pty and serves a printer built from `cfg` on it, delaying every reply line by
    /// `latency`.
    pub fn spawn(cfg: SimConfig, latency: Duration) -> Result<Self, Errno> {
        let pty = openpty(None, None)?;
        for fd in [&pty.master, &pty.slave] {
            let mut t = tcgetattr(fd)?;
            cfmakeraw(&mut t);
            tcsetattr(fd, SetArg::TCSANOW, &t)?;
        }
        let path = nix::unistd::ttyname(&pty.slave)?;
        let stop = Arc::new(AtomicBool::new(false));
        let executed = Arc::new(Mutex::new(Vec::new()));
        let disconnected = Arc::new(AtomicBool::new(false));
        let (s, e, d) = (stop.clone(), executed.clone(), disconnected.clone());
        let thread = std::thread::spawn(move || {
            // Holding the slave open keeps the master readable while no client has it open.
            let _slave = pty.slave;
            pump(&pty.master, Printer::new(cfg), latency, &s, &e, &d)
        });
        Ok(Self {
            path,
            stop,
            executed,
            disconnected,
            thread: Some(thread),
        })
    }

    /// The pty's device path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Commands executed so far.
    pub fn executed(&self) -> Vec<Executed> {
        self.executed
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Whether a simulated disconnect ended the service.
    pub fn is_disconnected(&self) -> bool {
        self.disconnected.load(Ordering::Relaxed)
    }

    /// Whether the service thread has ended.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }
}

impl Drop for PtyPrinter {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn pump(
    master: &OwnedFd,
    mut printer: Printer,
    latency: Duration,
    stop: &AtomicBool,
    executed: &Mutex<Vec<Executed>>,
    disconnected: &AtomicBool,
) -> Result<(), Errno> {
    let start = Instant::now();
    let mut delayed: VecDeque<(Duration, Vec<u8>)> = VecDeque::new();
    let mut buf = [0u8; 4096];
    let mut seen = 0;
    while !stop.load(Ordering::Relaxed) {
        let now = start.elapsed();
        printer.advance(now);
        let out = printer.take_output();
        for line in out.split_inclusive(|&b| b == b'\n') {
            delayed.push_back((now + latency, line.to_vec()));
        }
        while delayed.front().is_some_and(|(t, _)| *t <= now) {
            if let Some((_, bytes)) = delayed.pop_front() {
                write_all(master, &bytes)?;
            }
        }
        if printer.executed().len() > seen {
            let mut log = executed.lock().unwrap_or_else(PoisonError::into_inner);
            log.extend(printer.executed().iter().skip(seen).cloned());
            seen = printer.executed().len();
        }
        if printer.is_disconnected() {
            disconnected.store(true, Ordering::Relaxed);
            return Ok(());
        }
        let next = [printer.next_wakeup(), delayed.front().map(|(t, _)| *t)]
            .into_iter()
            .flatten()
            .min();
        let wait = next.map_or(Duration::from_millis(50), |t| {
            t.saturating_sub(start.elapsed())
        });
        let wait_ms = u16::try_from(wait.as_micros().div_ceil(1000).min(50)).unwrap_or(50);
        let mut fds = [PollFd::new(master.as_fd(), PollFlags::POLLIN)];
        match poll(&mut fds, PollTimeout::from(wait_ms)) {
            Ok(n) if n > 0 => match nix::unistd::read(master, &mut buf) {
                Ok(k) => printer.receive(buf.get(..k).unwrap_or_default(), start.elapsed()),
                Err(Errno::EAGAIN | Errno::EINTR) => {}
                Err(e) => return Err(e),
            },
            Ok(_) | Err(Errno::EINTR) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

fn write_all(fd: &OwnedFd, mut bytes: &[u8]) -> Result<(), Errno> {
    while !bytes.is_empty() {
        match nix::unistd::write(fd, bytes) {
            Ok(n) => bytes = bytes.get(n..).unwrap_or_default(),
            Err(Errno::EAGAIN | Errno::EINTR) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

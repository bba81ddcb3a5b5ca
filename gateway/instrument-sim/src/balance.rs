//! A simulated analytical balance speaking MT-SICS level 0: `S` (stable weight), `SI` (weight
//! immediately; "dynamic" while the pan settles), `ES` for anything else, and scripted faults
//! (busy, overload, underload). It runs in-process behind a byte link or on a pseudo-terminal.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError};

/// A fault the balance reports on its next weighing command instead of a weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// `S I`.
    Busy,
    /// `S +`.
    Overload,
    /// `S -`.
    Underload,
}

/// The balance's state.
#[derive(Debug, Clone, Default)]
pub struct SimBalance {
    load_mg: f64,
    settling_reads: u32,
    faults: VecDeque<Fault>,
    commands: u64,
}

impl SimBalance {
    /// An empty balance.
    pub fn new() -> Self {
        Self::default()
    }

    /// Puts a unit of `mass_mg` on the pan; the next `settling_reads` `SI` answers are dynamic.
    pub fn place(&mut self, mass_mg: f64, settling_reads: u32) {
        self.load_mg = mass_mg;
        self.settling_reads = settling_reads;
    }

    /// Queues a fault for the next weighing command.
    pub fn inject(&mut self, fault: Fault) {
        self.faults.push_back(fault);
    }

    /// Commands answered so far.
    pub fn commands(&self) -> u64 {
        self.commands
    }

    fn weight(&self, stable: bool) -> String {
        // Readability 0.01 mg, reported in grams with 5 decimals, as a semi-micro balance does.
        format!(
            "S {} {:>10.5} g\r\n",
            if stable { "S" } else { "D" },
            self.load_mg / 1000.0
        )
    }

    /// Answers one command line (without its terminator).
    pub fn respond(&mut self, command: &str) -> String {
        self.commands += 1;
        let command = command.trim();
        if command != "S" && command != "SI" {
            return "ES\r\n".to_owned();
        }
        if let Some(f) = self.faults.pop_front() {
            return match f {
                Fault::Busy => "S I\r\n",
                Fault::Overload => "S +\r\n",
                Fault::Underload => "S -\r\n",
            }
            .to_owned();
        }
        if command == "S" {
            // `S` waits until the weight is stable.
            self.settling_reads = 0;
            self.weight(true)
        } else if self.settling_reads > 0 {
            self.settling_reads -= 1;
            self.weight(false)
        } else {
            self.weight(true)
        }
    }
}

/// Feeds bytes to a balance line by line and collects its answers.
#[derive(Debug, Default)]
struct LineFeeder {
    input: Vec<u8>,
}

impl LineFeeder {
    fn feed(&mut self, bytes: &[u8], balance: &mut SimBalance) -> Vec<u8> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == b'\n' {
                let line = String::from_utf8_lossy(&self.input).into_owned();
                self.input.clear();
                out.extend_from_slice(balance.respond(&line).as_bytes());
            } else if self.input.len() < 256 {
                self.input.push(b);
            }
        }
        out
    }
}

/// The balance behind an in-memory byte link: write commands, read answers.
#[derive(Debug, Clone)]
pub struct InProcessLink {
    balance: Arc<Mutex<SimBalance>>,
    feeder: Arc<Mutex<LineFeeder>>,
    output: Arc<Mutex<VecDeque<u8>>>,
}

impl InProcessLink {
    /// A link to `balance` (shared, so a test can place units while the adapter talks).
    pub fn new(balance: Arc<Mutex<SimBalance>>) -> Self {
        InProcessLink {
            balance,
            feeder: Arc::default(),
            output: Arc::default(),
        }
    }
}

impl Write for InProcessLink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let mut balance = self.balance.lock().unwrap_or_else(PoisonError::into_inner);
        let answer = self
            .feeder
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .feed(buf, &mut balance);
        self.output
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend(answer);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Read for InProcessLink {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let mut out = self.output.lock().unwrap_or_else(PoisonError::into_inner);
        let n = buf.len().min(out.len());
        for (slot, b) in buf.iter_mut().zip(out.drain(..n)) {
            *slot = b;
        }
        Ok(n)
    }
}

/// Why the pty balance could not start.
#[derive(Debug, thiserror::Error)]
pub enum PtyError {
    /// A pty call failed.
    #[error("pseudo-terminal: {0}")]
    Pty(#[from] rustix::io::Errno),
    /// The slave name is not UTF-8.
    #[error("pseudo-terminal name is not UTF-8")]
    Name,
}

/// The balance on a pseudo-terminal: open [`PtyBalance::path`] as its serial port.
#[derive(Debug)]
pub struct PtyBalance {
    path: PathBuf,
    balance: Arc<Mutex<SimBalance>>,
    _thread: std::thread::JoinHandle<()>,
}

impl PtyBalance {
    /// Starts serving `balance` on a new pty.
    pub fn spawn(balance: Arc<Mutex<SimBalance>>) -> Result<Self, PtyError> {
        use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY)?;
        grantpt(&master)?;
        unlockpt(&master)?;
        let name = ptsname(&master, Vec::new())?;
        let path = PathBuf::from(name.into_string().map_err(|_| PtyError::Name)?);
        // Raw mode on the line, as on a real serial port: no echo, no CR/LF translation.
        {
            let slave = rustix::fs::open(
                &path,
                rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY,
                rustix::fs::Mode::empty(),
            )?;
            let mut t = rustix::termios::tcgetattr(&slave)?;
            t.make_raw();
            rustix::termios::tcsetattr(&slave, rustix::termios::OptionalActions::Now, &t)?;
        }
        let mut file = std::fs::File::from(master);
        let shared = Arc::clone(&balance);
        let thread = std::thread::spawn(move || {
            let mut feeder = LineFeeder::default();
            let mut buf = [0u8; 256];
            loop {
                let n = match file.read(&mut buf) {
                    // EIO once the last slave descriptor closes; then wait for the next opener.
                    Ok(0) | Err(_) => {
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        continue;
                    }
                    Ok(n) => n,
                };
                let answer = {
                    let mut b = shared.lock().unwrap_or_else(PoisonError::into_inner);
                    feeder.feed(buf.get(..n).unwrap_or_default(), &mut b)
                };
                if file.write_all(&answer).is_err() {
                    return;
                }
            }
        });
        Ok(PtyBalance {
            path,
            balance,
            _thread: thread,
        })
    }

    /// The serial device to open.
    pub fn path(&self) -> &std::path::Path {
        &self.path
    }

    /// The simulated balance, to place units and inject faults.
    pub fn balance(&self) -> &Arc<Mutex<SimBalance>> {
        &self.balance
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_s_and_si_with_settling_and_faults() {
        let mut b = SimBalance::new();
        b.place(251.37, 2);
        assert_eq!(b.respond("SI"), "S D    0.25137 g\r\n");
        assert_eq!(b.respond("SI"), "S D    0.25137 g\r\n");
        assert_eq!(b.respond("SI"), "S S    0.25137 g\r\n");
        b.inject(Fault::Overload);
        assert_eq!(b.respond("S"), "S +\r\n");
        assert_eq!(b.respond("XYZ"), "ES\r\n");
        assert_eq!(b.commands(), 5);
    }

    #[test]
    fn in_process_link_carries_commands_and_answers() {
        let b = Arc::new(Mutex::new(SimBalance::new()));
        b.lock().unwrap().place(1000.0, 0);
        let mut link = InProcessLink::new(Arc::clone(&b));
        link.write_all(b"S\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = link.read(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"S S    1.00000 g\r\n");
    }
}

//! A real software TPM for tests: each `Swtpm::start` runs its own swtpm on free TCP ports with a
//! fresh state directory and kills it on drop (tss-esapi 7 ignores `path=` in TCTI strings, so one
//! TPM per port). With `DOSEGATE_REQUIRE_REAL=1` a missing swtpm fails the test; otherwise the test
//! says it skipped. Shared by the swtpm and broker test binaries (`#[path]` module).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use dosegate::tpm::{Handles, Tpm, TpmConfig};

/// The application PCR the tests use.
pub(crate) const PCR: u8 = 15;

/// A running swtpm, killed on drop.
pub(crate) struct Swtpm {
    child: Child,
    pub(crate) port: u16,
    pub(crate) state: tempfile::TempDir,
}

fn swtpm_available() -> bool {
    let found = Command::new("swtpm")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !found {
        assert!(
            std::env::var_os("DOSEGATE_REQUIRE_REAL").is_none(),
            "swtpm is not installed and DOSEGATE_REQUIRE_REAL is set (run scripts/setup-deps.sh)"
        );
        eprintln!("SKIPPED: swtpm is not installed (scripts/setup-deps.sh installs it)");
    }
    found
}

impl Swtpm {
    pub(crate) fn start() -> Option<Self> {
        if !swtpm_available() {
            return None;
        }
        let state = tempfile::tempdir().unwrap();
        // Another program may bind one of the two ports between the check and swtpm's own bind:
        // then swtpm exits, and it is started again on other ports.
        for _ in 0..5 {
            let port = super::ports::free_ports(2);
            if let Some(child) = Self::spawn(state.path(), port) {
                return Some(Self { child, port, state });
            }
        }
        panic!("swtpm did not start on any of five port pairs");
    }

    /// Starts swtpm on `port` (and its control channel on `port + 1`); `None` if it exited
    /// without listening.
    fn spawn(state: &Path, port: u16) -> Option<Child> {
        let mut child = Command::new("swtpm")
            .args(["socket", "--tpm2"])
            .arg("--server")
            .arg(format!("type=tcp,port={port},bindaddr=127.0.0.1"))
            .arg("--ctrl")
            .arg(format!("type=tcp,port={},bindaddr=127.0.0.1", port + 1))
            .args(["--flags", "not-need-init,startup-clear"])
            .arg("--tpmstate")
            .arg(format!("dir={}", state.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start swtpm");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            if child.try_wait().unwrap().is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "swtpm did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        Some(child)
    }

    /// Stops swtpm and starts it again on the same state (a power cycle).
    pub(crate) fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.state.path(), self.port)
            .unwrap_or_else(|| panic!("swtpm did not start again on port {}", self.port));
    }

    pub(crate) fn tcti(&self) -> String {
        format!("swtpm:host=127.0.0.1,port={}", self.port)
    }

    pub(crate) fn config(&self) -> TpmConfig {
        TpmConfig {
            tcti: self.tcti(),
            app_pcr: PCR,
            handles: Handles::default(),
        }
    }

    pub(crate) fn open(&self) -> Tpm {
        Tpm::open(&self.config()).expect("open TPM")
    }
}

impl Drop for Swtpm {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

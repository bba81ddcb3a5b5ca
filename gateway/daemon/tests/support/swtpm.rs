//! A real software TPM for tests: each `Swtpm::start` runs its own swtpm on free TCP ports with a
//! fresh state directory and kills it on drop (tss-esapi 7 ignores `path=` in TCTI strings, so one
//! TPM per port). With `DOSEGATE_REQUIRE_REAL=1` a missing swtpm fails the test; otherwise the test
//! says it skipped. Shared by the swtpm and broker test binaries (`#[path]` module).
#![allow(dead_code, clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::net::{TcpListener, TcpStream};
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

fn free_port_pair() -> u16 {
    for _ in 0..100 {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no free port pair for swtpm");
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
        let port = free_port_pair();
        let child = Self::spawn(state.path(), port);
        Some(Self { child, port, state })
    }

    fn spawn(state: &Path, port: u16) -> Child {
        let child = Command::new("swtpm")
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
            assert!(Instant::now() < deadline, "swtpm did not listen on {port}");
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Stops swtpm and starts it again on the same state (a power cycle).
    pub(crate) fn restart(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.child = Self::spawn(self.state.path(), self.port);
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

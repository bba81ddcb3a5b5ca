//! One QEMU machine booting the image: q35 with SMM, TCG, 2 vCPUs, 512 MB, OVMF with secure boot
//! and a fresh copy of the variables (our PK/KEK/db enrolled), swtpm as a TPM 2.0 (CRB), the disk
//! in snapshot mode, the console on serial 0 (read here), the printer's port on serial 1 (a unix
//! socket), user networking where the "hub" 10.0.2.100 answers on 8883, 8080 and 443 by noting
//! each connection in a file, and system credentials passed as SMBIOS type 11 strings.
//!
//! It owns the processes and the console; it does not judge what it reads (the tests do).
//! `DOSEGATE_QEMU_CONSOLE=1` echoes the console to stderr while a test runs.
//! QEMU and swtpm are killed on drop, so a failed assertion never leaves a guest running.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

use crate::HarnessError;
use crate::artifacts::Artifacts;
use crate::disk::WorkDir;
use crate::report::Report;

/// The firmware code (secure-boot build with SMM) from Debian's `ovmf`.
pub const OVMF_CODE: &str = "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd";
/// Ports the fake hub at 10.0.2.100 answers on.
pub const HUB_PORTS: [u16; 3] = [8883, 8080, 443];
const TAIL_LINES: usize = 40;

/// How to boot.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The disk to boot (a scratch copy).
    pub disk: PathBuf,
    /// Let the guest reboot (A/B rollback) instead of exiting on reboot.
    pub allow_reboot: bool,
    /// System credentials, name → bytes.
    pub credentials: Vec<(String, Vec<u8>)>,
    /// A file attached read-only as a second virtio disk with serial `dosegate-bundle` (the
    /// guest sees `/dev/disk/by-id/virtio-dosegate-bundle`).
    pub bundle_disk: Option<PathBuf>,
}

/// A running machine.
#[derive(Debug)]
pub struct Machine {
    qemu: Child,
    swtpm: Child,
    lines: Receiver<String>,
    seen: Vec<String>,
    started: Instant,
    dir: WorkDir,
}

fn spawn(cmd: &mut Command, what: &str) -> Result<Child, HarnessError> {
    cmd.spawn()
        .map_err(HarnessError::io(format!("start {what}")))
}

fn start_swtpm(d: &Path) -> Result<(Child, PathBuf), HarnessError> {
    let tpm_sock = d.join("swtpm.sock");
    let swtpm = spawn(
        Command::new("swtpm")
            .args(["socket", "--tpm2", "--terminate", "--tpmstate"])
            .arg(format!("dir={}", d.join("tpm").display()))
            .arg("--ctrl")
            .arg(format!("type=unixio,path={}", tpm_sock.display()))
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
        "swtpm",
    )?;
    let t0 = Instant::now();
    while !tpm_sock.exists() && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok((swtpm, tpm_sock))
}

/// Reads QEMU's stdout (the guest console) line by line on a thread.
fn read_console(qemu: &mut Child) -> Receiver<String> {
    let (tx, lines) = channel();
    let echo = std::env::var_os("DOSEGATE_QEMU_CONSOLE").is_some();
    if let Some(out) = qemu.stdout.take() {
        std::thread::spawn(move || {
            let mut reader = BufReader::new(out);
            let mut buf = Vec::new();
            while reader.read_until(b'\n', &mut buf).is_ok_and(|n| n > 0) {
                let line = String::from_utf8_lossy(&buf).replace(['\r', '\u{1b}'], "");
                if echo {
                    eprint!("console| {line}");
                }
                if tx.send(line.trim_end().to_owned()).is_err() {
                    break;
                }
                buf.clear();
            }
        });
    }
    lines
}

/// The bundle disk, read-only, with the serial the guest's test unit looks for.
fn attach_bundle(cmd: &mut Command, bundle: Option<&Path>) {
    if let Some(bundle) = bundle {
        cmd.arg("-drive")
            .arg(format!(
                "if=none,id=d1,file={},format=raw,readonly=on",
                bundle.display()
            ))
            .args(["-device", "virtio-blk-pci,drive=d1,serial=dosegate-bundle"]);
    }
}

impl Machine {
    /// Starts swtpm and QEMU.
    pub fn boot(art: &Artifacts, boot: &Boot) -> Result<Self, HarnessError> {
        let dir = WorkDir::new("vm")?;
        let d = dir.path();
        let vars = d.join("vars.fd");
        std::fs::copy(&art.ovmf_vars, &vars).map_err(HarnessError::io("copy OVMF vars"))?;
        std::fs::create_dir_all(d.join("tpm")).map_err(HarnessError::io("tpm state dir"))?;
        let (swtpm, tpm_sock) = start_swtpm(d)?;
        let netdev = HUB_PORTS
            .iter()
            .fold(String::from("user,id=n0"), |acc, port| {
                format!(
                    "{acc},guestfwd=tcp:10.0.2.100:{port}-cmd:touch {}",
                    d.join(format!("hub-{port}")).display()
                )
            });
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-machine",
            "q35,smm=on",
            "-accel",
            "tcg",
            "-cpu",
            "max",
            "-m",
            "512",
            "-smp",
            "2",
        ])
        .args(["-nodefaults", "-display", "none"])
        .args(["-global", "driver=cfi.pflash01,property=secure,value=on"])
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=0,readonly=on,file={OVMF_CODE}"
        ))
        .arg("-drive")
        .arg(format!(
            "if=pflash,format=raw,unit=1,file={}",
            vars.display()
        ))
        .arg("-chardev")
        .arg(format!("socket,id=chrtpm,path={}", tpm_sock.display()))
        .args([
            "-tpmdev",
            "emulator,id=tpm0,chardev=chrtpm",
            "-device",
            "tpm-crb,tpmdev=tpm0",
        ])
        .arg("-drive")
        .arg(format!(
            "if=none,id=d0,file={},format=raw,snapshot=on",
            boot.disk.display()
        ))
        .args(["-device", "virtio-blk-pci,drive=d0"])
        .args([
            "-netdev",
            &netdev,
            "-device",
            "virtio-net-pci,netdev=n0,romfile=",
        ])
        .args(["-device", "virtio-rng-pci"])
        .args([
            "-chardev",
            "stdio,id=con,signal=off",
            "-serial",
            "chardev:con",
        ])
        .arg("-chardev")
        .arg(format!(
            "socket,id=printer,path={},server=on,wait=off",
            d.join("printer.sock").display()
        ))
        .args(["-serial", "chardev:printer"]);
        attach_bundle(&mut cmd, boot.bundle_disk.as_deref());
        if !boot.allow_reboot {
            cmd.arg("-no-reboot");
        }
        for (name, value) in &boot.credentials {
            cmd.arg("-smbios").arg(format!(
                "type=11,value=io.systemd.credential.binary:{name}={}",
                crate::base64(value)
            ));
        }
        let mut qemu = spawn(
            cmd.stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit()),
            "qemu-system-x86_64",
        )?;
        let started = Instant::now();
        let lines = read_console(&mut qemu);
        Ok(Self {
            qemu,
            swtpm,
            lines,
            seen: Vec::new(),
            started,
            dir,
        })
    }

    /// Time since QEMU started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Every console line read so far.
    pub fn console(&self) -> &[String] {
        &self.seen
    }

    fn tail(&self) -> String {
        let from = self.seen.len().saturating_sub(TAIL_LINES);
        self.seen.get(from..).unwrap_or_default().join("\n")
    }

    /// Reads the console until a line satisfies `pred`, or `timeout` passes, or QEMU exits.
    pub fn wait_for(
        &mut self,
        what: &str,
        timeout: Duration,
        pred: impl Fn(&str) -> bool,
    ) -> Result<String, HarnessError> {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return Ok(line);
                    }
                }
                Err(RecvTimeoutError::Timeout) => {
                    return Err(HarnessError::Timeout {
                        what: what.to_owned(),
                        after: timeout,
                        tail: self.tail(),
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(HarnessError::Exited {
                        what: what.to_owned(),
                        tail: self.tail(),
                    });
                }
            }
        }
    }

    /// Waits for the image's test report (`DGT …` lines up to `DGT-END`).
    pub fn report(&mut self, timeout: Duration) -> Result<Report, HarnessError> {
        let from = self.seen.len();
        self.wait_for("the test report (DGT-END)", timeout, |l| {
            l.contains("DGT-END")
        })?;
        Ok(Report::parse(self.seen.get(from..).unwrap_or_default()))
    }

    /// Whether the fake hub saw a connection on `port`.
    pub fn hub_saw(&self, port: u16) -> bool {
        self.dir.path().join(format!("hub-{port}")).exists()
    }

    /// The printer port's socket (the guest's `/dev/ttyS1`).
    pub fn printer_socket(&self) -> PathBuf {
        self.dir.path().join("printer.sock")
    }

    /// QEMU's peak resident memory (VmHWM), in KiB.
    pub fn qemu_peak_rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.qemu.id())).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
    }

    /// The machine's private folder.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        let _ = self.qemu.kill();
        let _ = self.qemu.wait();
        let _ = self.swtpm.kill();
        let _ = self.swtpm.wait();
    }
}

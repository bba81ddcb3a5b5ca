//! `dosegate run` as systemd runs it: a valid configuration gives READY=1 on the notify socket,
//! SIGTERM gives STOPPING=1 and exit 0; a bad configuration exits 3 before any readiness.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("dosegate-run-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("state")).expect("scratch dir");
    dir
}

fn config(dir: &std::path::Path, extra: &str) -> PathBuf {
    let path = dir.join("gateway.toml");
    let text = format!(
        "gateway_id = \"spoke-test-01\"\n[paths]\nstate_dir = \"{}\"\n[printer]\nserial = \"/dev/ttyUSB9\"\n[tpm]\ndevice = \"/dev/tpmrm9\"\n{extra}",
        dir.join("state").display()
    );
    std::fs::write(&path, text).expect("write config");
    path
}

fn recv(sock: &UnixDatagram) -> String {
    let mut buf = [0u8; 512];
    let n = sock
        .recv(&mut buf)
        .expect("notification within the timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn notifies_ready_then_stops_cleanly_on_sigterm() {
    let dir = scratch("ok");
    let notify = dir.join("notify");
    let sock = UnixDatagram::bind(&notify).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let child = Command::new(env!("CARGO_BIN_EXE_dosegate"))
        .args(["run", "--config"])
        .arg(config(&dir, "[insecure]\n"))
        .env("NOTIFY_SOCKET", &notify)
        .stderr(Stdio::piped())
        .spawn()
        .expect("start dosegate run");
    assert!(recv(&sock).starts_with("READY=1\n"));
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    assert!(recv(&sock).starts_with("STOPPING=1\n"));
    let out = child.wait_with_output().expect("wait");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{log}");
    assert!(log.contains("INSECURE"), "no insecure warning: {log}");
    assert!(log.contains("SIGTERM"), "{log}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn refuses_a_bad_configuration_without_notifying() {
    let dir = scratch("bad");
    let notify = dir.join("notify");
    let sock = UnixDatagram::bind(&notify).expect("bind notify socket");
    sock.set_nonblocking(true).expect("nonblocking");
    let out = Command::new(env!("CARGO_BIN_EXE_dosegate"))
        .args(["run", "--json", "--config"])
        .arg(config(&dir, "[mqtt]\nhost = \"hub\"\n"))
        .env("NOTIFY_SOCKET", &notify)
        .output()
        .expect("run");
    let log = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{log}");
    assert!(log.contains("\"code\":\"config-invalid\""), "{log}");
    let mut buf = [0u8; 64];
    assert!(
        sock.recv(&mut buf).is_err(),
        "notified despite a bad configuration"
    );
    std::fs::remove_dir_all(dir).ok();
}

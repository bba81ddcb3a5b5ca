//! `dosegate health`: is this boot good? Yes only when the running gateway's status file is
//! fresh, its process is alive, the hub's broker is connected and the printer link is up.
//!
//! `dosegate-health.service` runs it on every boot (with `--wait-s`, so the links have time to
//! come up); `boot-complete.target` requires that unit, so `systemd-bless-boot` marks an update's
//! boot entry good only when this exits 0, and sd-boot falls back to the previous release
//! otherwise. This command only reads: the status file (`crate::status`), `/proc/<pid>` and the
//! image's `os-release`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;

use crate::status::{self, GatewayStatus, StatusError};

const AFTER_HELP: &str = "\
Examples:
  dosegate health                          # once, text
  dosegate health --wait-s 120 --json      # retry each second for up to 2 minutes (boot gate)
  dosegate health --state-dir /var/lib/dosegate --max-age-s 30

It reads <state-dir>/status.json, which `dosegate run` rewrites while it runs. The first line of
text output is `DOSEGATE-HEALTH-OK version=…` or `DOSEGATE-HEALTH-FAIL version=… [code] …`.

Exit codes (problem codes in brackets, stable; with several problems, the first in this list):
  0  healthy: fresh status, process alive, broker connected (when the configuration has a
     [fleet] table), printer link up
  2  bad command line
  3  no status file yet [status-missing]
  4  status file unreadable or not valid [status-unreadable] [status-invalid]
  5  status older than --max-age-s [status-stale]
  6  the process that wrote it is gone [process-gone]
  7  not connected to the hub's broker [broker-down]
  8  printer link down [printer-down]";

/// Check whether the running gateway is healthy (the boot-blessing gate).
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The gateway's state directory (where `dosegate run` writes status.json).
    #[arg(long, value_name = "DIR", default_value = "/var/lib/dosegate")]
    state_dir: PathBuf,
    /// Oldest acceptable status, in seconds.
    #[arg(long, value_name = "N", default_value_t = 30)]
    max_age_s: u64,
    /// Keep checking once a second for up to N seconds until healthy (0: check once).
    #[arg(long, value_name = "N", default_value_t = 0)]
    wait_s: u64,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
    /// The os-release naming this image's version.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/lib/os-release",
        hide = true
    )]
    os_release: PathBuf,
}

/// One reason the gateway is not healthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "code", rename_all = "kebab-case")]
pub enum Problem {
    /// No status file.
    StatusMissing {
        /// Why, in words.
        detail: String,
    },
    /// The status file could not be read.
    StatusUnreadable {
        /// Why, in words.
        detail: String,
    },
    /// The status file is not valid.
    StatusInvalid {
        /// Why, in words.
        detail: String,
    },
    /// The status is too old.
    StatusStale {
        /// Its age.
        age_ms: u64,
        /// The limit.
        max_age_ms: u64,
    },
    /// The writer's process is not running.
    ProcessGone {
        /// Its pid.
        pid: u32,
    },
    /// The broker link is down.
    BrokerDown,
    /// The printer link is down.
    PrinterDown,
}

impl Problem {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::StatusMissing { .. } => "status-missing",
            Self::StatusUnreadable { .. } => "status-unreadable",
            Self::StatusInvalid { .. } => "status-invalid",
            Self::StatusStale { .. } => "status-stale",
            Self::ProcessGone { .. } => "process-gone",
            Self::BrokerDown => "broker-down",
            Self::PrinterDown => "printer-down",
        }
    }

    /// The exit code of `dosegate health` when this is the first problem.
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::StatusMissing { .. } => 3,
            Self::StatusUnreadable { .. } | Self::StatusInvalid { .. } => 4,
            Self::StatusStale { .. } => 5,
            Self::ProcessGone { .. } => 6,
            Self::BrokerDown => 7,
            Self::PrinterDown => 8,
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::StatusMissing { detail }
            | Self::StatusUnreadable { detail }
            | Self::StatusInvalid { detail } => detail.clone(),
            Self::StatusStale { age_ms, max_age_ms } => {
                format!("status is {age_ms} ms old; at most {max_age_ms} ms")
            }
            Self::ProcessGone { pid } => format!("process {pid} is not running"),
            Self::BrokerDown => "not connected to the hub's broker".into(),
            Self::PrinterDown => "printer link down".into(),
        }
    }
}

/// Judges a status read at `now_ms`: every problem, in exit-code order (empty = healthy).
/// `alive` says whether a pid is a running gateway process.
pub fn assess(
    status: &Result<GatewayStatus, StatusError>,
    now_ms: u64,
    max_age_ms: u64,
    alive: impl Fn(u32) -> bool,
) -> Vec<Problem> {
    let s = match status {
        Ok(s) => s,
        Err(e) => {
            let detail = e.to_string();
            return vec![match e {
                StatusError::Missing { .. } => Problem::StatusMissing { detail },
                StatusError::Unreadable { .. } => Problem::StatusUnreadable { detail },
                StatusError::TooLarge { .. } | StatusError::Invalid { .. } => {
                    Problem::StatusInvalid { detail }
                }
            }];
        }
    };
    let mut problems = Vec::new();
    // A status from the future (clock stepped back) counts as fresh only within the same bound.
    let age_ms = now_ms.abs_diff(s.updated_ms);
    if age_ms > max_age_ms {
        problems.push(Problem::StatusStale { age_ms, max_age_ms });
    }
    if !alive(s.pid) {
        problems.push(Problem::ProcessGone { pid: s.pid });
    }
    if s.fleet_configured && !s.broker_connected {
        problems.push(Problem::BrokerDown);
    }
    if !s.printer_link_up {
        problems.push(Problem::PrinterDown);
    }
    problems
}

/// Whether `pid` is a running `dosegate` process (by `/proc/<pid>/comm`).
fn gateway_alive(pid: u32) -> bool {
    pid != 0
        && std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end().starts_with("dosegate"))
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// `IMAGE_VERSION` from an os-release file (bounded read), or `?`.
pub fn image_version(os_release: &Path) -> String {
    use std::io::Read as _;
    let mut text = String::new();
    let read =
        std::fs::File::open(os_release).and_then(|f| f.take(16 * 1024).read_to_string(&mut text));
    if read.is_err() {
        return "?".into();
    }
    text.lines()
        .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
        .map_or_else(
            || "?".into(),
            |v| v.trim().trim_matches('"').chars().take(32).collect(),
        )
}

#[derive(Serialize)]
struct Report<'a> {
    healthy: bool,
    version: &'a str,
    problems: Vec<ProblemJson>,
    status: Option<&'a GatewayStatus>,
    waited_ms: u64,
}

#[derive(Serialize)]
struct ProblemJson {
    code: &'static str,
    detail: String,
}

/// Entry point from `main`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let max_age_ms = args.max_age_s.saturating_mul(1000);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(args.wait_s);
    let (status, problems) = loop {
        let status = status::read(&args.state_dir);
        let problems = assess(&status, now_ms(), max_age_ms, gateway_alive);
        if problems.is_empty() || Instant::now() >= deadline {
            break (status, problems);
        }
        std::thread::sleep(Duration::from_secs(1));
    };
    let version = image_version(&args.os_release);
    let waited_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    if args.json {
        let report = Report {
            healthy: problems.is_empty(),
            version: &version,
            problems: problems
                .iter()
                .map(|p| ProblemJson {
                    code: p.code(),
                    detail: p.detail(),
                })
                .collect(),
            status: status.as_ref().ok(),
            waited_ms,
        };
        println!("{}", serde_json::to_string(&report)?);
    } else if problems.is_empty() {
        let s = status.as_ref().ok();
        println!(
            "DOSEGATE-HEALTH-OK version={version} pid={} state={} broker=connected printer=up",
            s.map_or(0, |s| s.pid),
            s.map_or("?", |s| s.state.as_str())
        );
    } else {
        let reasons: Vec<String> = problems
            .iter()
            .map(|p| format!("[{}] {}", p.code(), p.detail()))
            .collect();
        println!(
            "DOSEGATE-HEALTH-FAIL version={version} {} (after {:.1}s)",
            reasons.join("; "),
            waited_ms as f64 / 1000.0
        );
    }
    Ok(problems
        .first()
        .map_or(ExitCode::SUCCESS, |p| ExitCode::from(p.exit_code())))
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u64 = 1_767_225_600_000;

    fn ok() -> GatewayStatus {
        GatewayStatus {
            pid: 7,
            updated_ms: NOW - 1_000,
            fleet_configured: true,
            broker_connected: true,
            printer_link_up: true,
            state: "idle".into(),
        }
    }

    #[test]
    fn healthy_when_fresh_alive_and_both_links_up() {
        assert!(assess(&Ok(ok()), NOW, 30_000, |_| true).is_empty());
    }

    #[test]
    fn names_every_missing_link_broker_first() {
        let mut s = ok();
        s.broker_connected = false;
        s.printer_link_up = false;
        let p = assess(&Ok(s), NOW, 30_000, |_| true);
        assert_eq!(p, [Problem::BrokerDown, Problem::PrinterDown]);
        assert_eq!(p[0].exit_code(), 7);
        let mut s = ok();
        s.printer_link_up = false;
        let p = assess(&Ok(s), NOW, 30_000, |_| true);
        assert_eq!(p, [Problem::PrinterDown]);
        assert_eq!(p[0].exit_code(), 8);
    }

    #[test]
    fn a_box_without_a_fleet_table_is_not_expected_to_connect() {
        let mut s = ok();
        s.fleet_configured = false;
        s.broker_connected = false;
        assert!(assess(&Ok(s.clone()), NOW, 30_000, |_| true).is_empty());
        s.printer_link_up = false;
        assert_eq!(
            assess(&Ok(s), NOW, 30_000, |_| true),
            [Problem::PrinterDown]
        );
    }

    #[test]
    fn a_stale_status_or_a_dead_writer_is_not_healthy() {
        let mut s = ok();
        s.updated_ms = NOW - 31_000;
        assert_eq!(
            assess(&Ok(s.clone()), NOW, 30_000, |_| true),
            [Problem::StatusStale {
                age_ms: 31_000,
                max_age_ms: 30_000
            }]
        );
        s.updated_ms = NOW + 60_000;
        assert_eq!(
            assess(&Ok(s), NOW, 30_000, |_| true)[0].code(),
            "status-stale"
        );
        let p = assess(&Ok(ok()), NOW, 30_000, |pid| pid != 7);
        assert_eq!(p, [Problem::ProcessGone { pid: 7 }]);
        assert_eq!(p[0].exit_code(), 6);
    }

    #[test]
    fn a_missing_or_invalid_file_maps_to_its_code() {
        let dir = tempfile::tempdir().expect("dir");
        let p = assess(&status::read(dir.path()), NOW, 30_000, |_| true);
        assert_eq!((p[0].code(), p[0].exit_code()), ("status-missing", 3));
        std::fs::write(dir.path().join(status::STATUS_FILE), b"[]").expect("w");
        let p = assess(&status::read(dir.path()), NOW, 30_000, |_| true);
        assert_eq!((p[0].code(), p[0].exit_code()), ("status-invalid", 4));
    }

    #[test]
    fn knows_its_own_process_and_no_other() {
        // The test binary is named dosegate-<hash>.
        assert!(gateway_alive(std::process::id()));
        assert!(!gateway_alive(0));
        assert!(!gateway_alive(1), "pid 1 is not the gateway");
    }

    #[test]
    fn reads_the_image_version() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("os-release");
        std::fs::write(&f, "ID=debian\nIMAGE_VERSION=\"0.1.0.2\"\n").expect("w");
        assert_eq!(image_version(&f), "0.1.0.2");
        assert_eq!(image_version(&dir.path().join("none")), "?");
    }
}

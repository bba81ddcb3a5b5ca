//! The serial adapter and `dosegate print` against the Marlin-faithful simulator served on a real
//! pseudo-terminal (tokio-serial opens it like a USB port): a verified printlet runs exactly once,
//! and a firmware that differs from its baseline is refused.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use dosegate::serial::{self, SerialSettings};
use dosegate_core::policy::{Policy, verify_program};
use dosegate_core::prescription::Prescription;
use dosegate_core::stream::{
    AbortReason, FirmwareCheck, MonitorLimits, StreamConfig, StreamProgram, Streamer,
};
use dosegate_printer_sim::{Fault, Faults, PtyPrinter, SimConfig};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

const GCODE: &str = "gateway/core/tests/data/gcode/slicer/hctz-cylinder-7.2x2.6.gcode";
const POLICY: &str = "policies/fdm-hctz-printlet.toml";
const RX: &str = "provisioning/examples/prescription-hctz.toml";

fn verified() -> (StreamProgram, Policy, Vec<String>) {
    let policy = Policy::from_toml(&std::fs::read_to_string(repo().join(POLICY)).unwrap()).unwrap();
    let rx = Prescription::from_toml(&std::fs::read_to_string(repo().join(RX)).unwrap()).unwrap();
    let program =
        verify_program(&policy, &rx, &std::fs::read(repo().join(GCODE)).unwrap()).unwrap();
    let texts = program
        .commands()
        .iter()
        .map(|c| c.text.to_owned())
        .collect();
    (
        StreamProgram::from_verified(&program).unwrap(),
        policy,
        texts,
    )
}

fn stream(
    sim: &PtyPrinter,
    cfg: StreamConfig,
    program: StreamProgram,
) -> Result<usize, AbortReason> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let mut port = serial::open(&SerialSettings::new(sim.path()))
            .await
            .unwrap();
        let start = Instant::now();
        let mut s = Streamer::new(program, cfg, start.elapsed());
        serial::run(&mut port, &mut s, start, |_, _| {}, std::future::pending())
            .await
            .map(|s| s.commands)
    })
}

fn program_ran(sim: &PtyPrinter) -> Vec<String> {
    const HOUSEKEEPING: &[&str] = &["M110", "M115", "M503", "M155", "M105", "M400", "M114"];
    sim.executed()
        .into_iter()
        .filter(|e| !HOUSEKEEPING.contains(&e.command.split(' ').next().unwrap_or("")))
        .map(|e| e.command)
        .collect()
}

#[test]
fn a_verified_printlet_runs_exactly_once_over_a_real_pty_despite_line_noise() {
    let (program, policy, texts) = verified();
    let faults = Faults {
        seed: 7,
        corrupt_per_mille: 20,
        resend_per_mille: 20,
        ..Faults::default()
    };
    let sim = PtyPrinter::spawn(
        SimConfig {
            faults,
            ..SimConfig::default()
        },
        Duration::from_millis(1),
    )
    .unwrap();
    let cfg = StreamConfig {
        monitor: MonitorLimits::from_policy(&policy),
        ..StreamConfig::default()
    };
    let commands = stream(&sim, cfg, program).expect("printed");
    assert_eq!(commands, texts.len());
    assert_eq!(program_ran(&sim), texts);
}

#[test]
fn a_printer_unplugged_mid_print_aborts_the_job() {
    let (program, _, texts) = verified();
    let faults = Faults {
        schedule: [(400, Fault::Disconnect)].into_iter().collect(),
        ..Faults::default()
    };
    let sim = PtyPrinter::spawn(
        SimConfig {
            faults,
            ..SimConfig::default()
        },
        Duration::ZERO,
    )
    .unwrap();
    let cfg = StreamConfig {
        ack_timeout: Duration::from_secs(2),
        max_probes: 1,
        ..StreamConfig::default()
    };
    let r = stream(&sim, cfg, program);
    assert!(
        matches!(
            r,
            Err(AbortReason::Disconnected { .. } | AbortReason::Unresponsive { .. })
        ),
        "{r:?}"
    );
    let ran = program_ran(&sim);
    assert!(ran.len() < texts.len());
    assert_eq!(ran, texts[..ran.len()].to_vec());
}

fn print_cli(sim: &PtyPrinter, extra: &[&str]) -> (i32, serde_json::Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_dosegate"))
        .arg("print")
        .arg("--port")
        .arg(sim.path())
        .arg("--gcode")
        .arg(repo().join(GCODE))
        .arg("--policy")
        .arg(repo().join(POLICY))
        .arg("--prescription")
        .arg(repo().join(RX))
        .arg("--json")
        .args(extra)
        .output()
        .unwrap();
    let v = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("no JSON ({e}): {}", String::from_utf8_lossy(&out.stderr)));
    (out.status.code().unwrap(), v)
}

#[test]
fn print_records_the_firmware_then_refuses_a_different_one() {
    let sim = PtyPrinter::spawn(SimConfig::default(), Duration::ZERO).unwrap();
    let (code, v) = print_cli(&sim, &["--record-firmware"]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["outcome"], "completed");
    assert_eq!(v["mode"], "engineering-unsigned");
    let ident = v["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "firmware_identified")
        .unwrap()
        .clone();

    let dir = std::env::temp_dir().join(format!("dosegate-print-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let baseline = dir.join("firmware.toml");
    std::fs::write(
        &baseline,
        format!(
            "m115_sha256 = {}\nm503_sha256 = {}\n",
            ident["m115_sha256"], ident["m503_sha256"]
        ),
    )
    .unwrap();

    let retuned = PtyPrinter::spawn(
        SimConfig {
            steps_per_mm_e: 100.0,
            ..SimConfig::default()
        },
        Duration::ZERO,
    )
    .unwrap();
    let (code, v) = print_cli(
        &retuned,
        &["--firmware-baseline", baseline.to_str().unwrap()],
    );
    assert_eq!(code, 3, "{v}");
    assert_eq!(v["code"], "firmware_mismatch");
    assert_eq!(v["reason"]["query"], "M503");
    assert!(
        program_ran(&retuned).is_empty(),
        "a command ran on unrecognised firmware"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn print_refuses_bad_usage_with_a_reason() {
    let sim = PtyPrinter::spawn(SimConfig::default(), Duration::ZERO).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_dosegate"))
        .args(["print", "--port"])
        .arg(sim.path())
        .arg("--policy")
        .arg(repo().join(POLICY))
        .arg("--gcode")
        .arg(repo().join(GCODE))
        .arg("--prescription")
        .arg(repo().join(RX))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("E_USAGE"));
    let _ = FirmwareCheck::RecordOnly;
}

#[test]
fn print_streams_a_hub_signed_job_and_refuses_one_for_another_gateway() {
    let data = repo().join("gateway/core/tests/data/job");
    let sim = PtyPrinter::spawn(SimConfig::default(), Duration::ZERO).unwrap();
    let job = |gateway: &str, extra: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_dosegate"))
            .arg("print")
            .arg("--port")
            .arg(sim.path())
            .arg("--job")
            .arg(data.join("accept/01_valid_threshold_two.cose"))
            .arg("--trust")
            .arg(data.join("trust-root.cbor"))
            .arg("--policy")
            .arg(repo().join(POLICY))
            .args(["--gateway-id", gateway, "--now", "1795000000", "--json"])
            .args(extra)
            .output()
            .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(
            |_| serde_json::json!({ "stderr": String::from_utf8_lossy(&out.stderr) }),
        );
        (out.status.code().unwrap(), v)
    };
    let (code, v) = job("spoke-01", &["--record-firmware"]);
    assert_eq!(
        code, 2,
        "a job must not print without a firmware baseline: {v}"
    );
    assert!(v["stderr"].as_str().unwrap().contains("E_USAGE"), "{v}");

    let dir = std::env::temp_dir().join(format!("dosegate-print-job-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let baseline = dir.join("firmware.toml");
    std::fs::write(
        &baseline,
        "m115_sha256 = \"ca4c59e5472ff11a6e3eae51becc43466b6a6f7c3c348ad2591e704004fb8231\"\n\
         m503_sha256 = \"f0a45548b3757c6cce88612e37872f6a55d4f9a2745c2d6014c4ba925d568780\"\n",
    )
    .unwrap();
    let b = baseline.to_str().unwrap();
    let (code, v) = job("spoke-02", &["--firmware-baseline", b]);
    assert_eq!(code, 1, "{v}");
    assert_eq!(v["outcome"], "refused");
    assert!(
        sim.executed().is_empty(),
        "the port was used for a refused job"
    );

    let (code, v) = job("spoke-01", &["--firmware-baseline", b]);
    assert_eq!(code, 0, "{v}");
    assert_eq!(v["mode"], "job");
    assert_eq!(v["outcome"], "completed");
    assert!(v["summary"]["commands"].as_u64().unwrap() > 100);
    let _ = std::fs::remove_dir_all(&dir);
}

//! `dosegate check-gcode` as an operator runs it: exit codes, the JSON shape, the human report.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn data(rel: &str) -> PathBuf {
    repo().join("gateway/core/tests/data/gcode").join(rel)
}

fn policy() -> PathBuf {
    repo().join("policies/fdm-hctz-printlet.toml")
}

fn run(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_dosegate"))
        .arg("check-gcode")
        .args(args)
        .output()
        .unwrap()
}

fn check(file: &Path, json: bool) -> Output {
    let rx = data("rx-corpus.toml");
    let p = policy();
    let mut args = vec![
        file.as_os_str(),
        "--policy".as_ref(),
        p.as_os_str(),
        "--prescription".as_ref(),
        rx.as_os_str(),
    ];
    if json {
        args.push("--json".as_ref());
    }
    run(&args)
}

fn json(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn accepted_program_exits_0_with_verdict_and_analysis() {
    let out = check(&data("accept/01_minimal_printlet.gcode"), true);
    assert_eq!(out.status.code(), Some(0));
    let v = json(&out);
    assert_eq!(v["verdict"], "accept");
    assert_eq!(v["reasons"].as_array().unwrap().len(), 0);
    let a = &v["analysis"];
    for field in [
        "filament_mm",
        "mass_mg",
        "dose_mg",
        "max_nozzle_c",
        "max_bed_c",
        "max_feed_mm_s",
        "layers",
        "est_time_s",
    ] {
        assert!(a.get(field).is_some(), "{field}");
    }
    assert_eq!(a["filament_mm"], 4.0);
    assert_eq!(a["max_nozzle_c"], 190.0);
    assert_eq!(a["layers"], 2);
    assert_eq!(v["policy"]["id"], "fdm-hctz-printlet");
    assert_eq!(v["sha256"].as_str().unwrap().len(), 64);
}

#[test]
fn rejected_program_exits_1_with_code_line_value_and_limit() {
    let out = check(&data("reject/14_nozzle_too_hot.gcode"), true);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["verdict"], "reject");
    let r = &v["reasons"][0];
    assert_eq!(r["code"], "DS_NOZZLE_TEMP_HIGH");
    assert_eq!(r["line"], 6);
    assert_eq!(r["value"], 230.0);
    assert_eq!(r["limit"], serde_json::json!([180.0, 200.0]));
}

#[test]
fn human_report_names_each_reason() {
    let out = check(&data("reject/01_firmware_flash_m997.gcode"), false);
    assert_eq!(out.status.code(), Some(1));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.starts_with("REJECT"), "{text}");
    assert!(
        text.contains("GCODE_FORBIDDEN_COMMAND at line 18"),
        "{text}"
    );
    assert!(text.contains("found M997"), "{text}");
}

#[test]
fn reads_the_program_from_stdin() {
    let rx = data("rx-corpus.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_dosegate"))
        .args(["check-gcode", "-", "--json", "--policy"])
        .arg(policy())
        .arg("--prescription")
        .arg(rx)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let program = std::fs::read(data("accept/01_minimal_printlet.gcode")).unwrap();
    std::io::Write::write_all(&mut child.stdin.take().unwrap(), &program).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(json(&out)["verdict"], "accept");
}

#[test]
fn missing_file_exits_2_with_a_stable_code() {
    let out = check(&data("no-such-file.gcode"), true);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["code"], "E_READ_GCODE");
}

#[test]
fn invalid_policy_exits_2_with_a_stable_code() {
    let rx = data("rx-corpus.toml");
    let not_a_policy = data("rx-corpus.toml");
    let f = data("accept/01_minimal_printlet.gcode");
    let out = run(&[
        f.as_os_str(),
        "--policy".as_ref(),
        not_a_policy.as_os_str(),
        "--prescription".as_ref(),
        rx.as_os_str(),
        "--json".as_ref(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json(&out)["error"]["code"], "E_POLICY_INVALID");
}

#[test]
fn usage_errors_exit_2_and_help_teaches_by_example() {
    let out = run(&["only-a-file.gcode".as_ref()]);
    assert_eq!(out.status.code(), Some(2));
    let help = run(&["--help".as_ref()]);
    let text = String::from_utf8(help.stdout).unwrap();
    assert!(
        text.contains("Examples:") && text.contains("Exit status:"),
        "{text}"
    );
}

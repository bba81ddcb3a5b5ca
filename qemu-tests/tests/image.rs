//! Scenarios that boot the appliance image under QEMU (feature `real-qemu`; run one at a time,
//! see `.config/nextest.toml`). Each works on a scratch copy of the disk built by `make image`.
//!
//! With `DOSEGATE_REQUIRE_REAL` set (as in `make test`) a missing QEMU/swtpm/image fails the
//! test; otherwise the test prints why it skipped.
#![cfg(feature = "real-qemu")]

use std::path::Path;
use std::time::Duration;

use dosegate_qemu_tests::artifacts::Artifacts;
use dosegate_qemu_tests::disk::{ScratchDisk, WorkDir};
use dosegate_qemu_tests::machine::{Boot, Machine};
use dosegate_qemu_tests::report::Report;
use dosegate_qemu_tests::{HarnessError, check_tools, real_required};

/// Under TCG on 2 shared cores a boot to the report takes ~1 min; leave room for a loaded CI.
const BOOT: Duration = Duration::from_secs(420);
/// Firmware + sd-boot alone.
const FIRMWARE: Duration = Duration::from_secs(180);
/// The exposure `systemd-analyze security` may give dosegate.service at most.
const MAX_EXPOSURE: f64 = 1.5;

fn artifacts() -> Option<Artifacts> {
    match check_tools().and_then(|()| Artifacts::locate()) {
        Ok(art) => Some(art),
        Err(err) if real_required() => panic!("DOSEGATE_REQUIRE_REAL is set: {err}"),
        Err(err) => {
            eprintln!("skipped: {err}");
            None
        }
    }
}

/// The configuration the tests give the gateway: the printer is QEMU's second serial port.
fn test_config() -> Vec<u8> {
    br#"gateway_id = "spoke-qemu-0001"

[paths]
state_dir = "/var/lib/dosegate"

[printer]
serial = "/dev/ttyS1"
baud = 115200

[tpm]
device = "/dev/tpmrm0"
"#
    .to_vec()
}

fn boot_of(disk: &Path, allow_reboot: bool) -> Boot {
    Boot {
        disk: disk.to_path_buf(),
        allow_reboot,
        credentials: vec![
            ("dosegate.test".to_owned(), b"1".to_vec()),
            ("dosegate.gateway.toml".to_owned(), test_config()),
        ],
    }
}

fn must<T>(what: &str, r: Result<T, HarnessError>) -> T {
    r.unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// Collects every failed expectation, so one boot reports all of them at once.
#[derive(Default)]
struct Expectations(Vec<String>);

impl Expectations {
    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }

    fn assert_none(self, context: &str) {
        assert!(
            self.0.is_empty(),
            "{context}:\n  - {}",
            self.0.join("\n  - ")
        );
    }
}

/// One boot of the unmodified image, checked from outside and through the image's report:
/// dosegate.service active and healthy, secure boot on with our keys, kernel lockdown, a verity
/// root mounted read-only, `/dev/tpmrm0` present with PCR 11 equal to the build's prediction, no
/// listening sockets, the hub port open and other ports blocked (seen from both ends), the
/// service's sandbox exposure ≤ 1.5, no SUID files, no getty, root locked.
#[test]
fn image_boots_to_a_healthy_locked_down_gateway() {
    let Some(art) = artifacts() else { return };
    let disk = must("copy disk", ScratchDisk::copy_of(&art));
    let mut vm = must("boot", Machine::boot(&art, &boot_of(disk.path(), false)));
    let report = must("report", vm.report(BOOT));
    let secs = vm.elapsed().as_secs_f64();
    eprintln!("report after {secs:.1}s: {:#?}", report.entries());
    eprintln!(
        "bench: boot_to_report_s={secs:.1} guest_uptime_s={} qemu_peak_rss_kib={} {}",
        report.get("uptime"),
        vm.qemu_peak_rss_kib().unwrap_or(0),
        report.get("boot")
    );
    let mut e = Expectations::default();
    expect_trusted_boot(&mut e, &art, &report, &vm);
    expect_locked_down(&mut e, &report, &vm);
    e.assert_none("healthy boot");
}

/// The gateway runs, healthy, from the verified root of this release, with secure boot, lockdown
/// and the predicted PCR 11.
fn expect_trusted_boot(e: &mut Expectations, art: &Artifacts, report: &Report, vm: &Machine) {
    e.check(
        report.get("version") == art.version,
        format!("version {:?} != {:?}", report.get("version"), art.version),
    );
    e.check(
        report.get("dosegate") == "active",
        format!("dosegate.service is {:?}", report.get("dosegate")),
    );
    e.check(
        report.get("health") == "active",
        format!("dosegate-health.service is {:?}", report.get("health")),
    );
    e.check(
        report.get("failed").is_empty(),
        format!("failed units: {}", report.get("failed")),
    );
    e.check(
        vm.console()
            .iter()
            .any(|l| l.contains("DOSEGATE-HEALTH-OK")),
        "no DOSEGATE-HEALTH-OK on the console",
    );
    e.check(report.get("tpmrm0") == "present", "/dev/tpmrm0 absent");
    e.check(
        report.get("pcr11") == art.pcr11,
        format!(
            "PCR 11 {:?} != predicted {:?}",
            report.get("pcr11"),
            art.pcr11
        ),
    );
    e.check(
        report.get("secureboot") == "1",
        format!("SecureBoot variable {:?}", report.get("secureboot")),
    );
    e.check(
        report.get("lockdown").contains("[integrity]"),
        format!("lockdown {:?}", report.get("lockdown")),
    );
    e.check(
        report
            .get("root")
            .starts_with("/dev/mapper/root squashfs ro"),
        format!(
            "root mount {:?} is not the verity device, read-only",
            report.get("root")
        ),
    );
}

/// Nothing listens, only the hub port goes out, the service is sandboxed, no way in.
fn expect_locked_down(e: &mut Expectations, report: &Report, vm: &Machine) {
    e.check(
        report.get("serial") == "present",
        "printer port /dev/ttyS1 absent",
    );
    e.check(
        report.get("listen").is_empty(),
        format!("listening TCP sockets: {}", report.get("listen")),
    );
    e.check(
        report
            .get("udp")
            .split_whitespace()
            .all(|s| s.ends_with(":68")),
        format!(
            "bound UDP sockets other than the DHCP client: {}",
            report.get("udp")
        ),
    );
    e.check(
        report.get("egress8883") == "open" && vm.hub_saw(8883),
        "hub broker port 8883 not reachable",
    );
    for port in [8080, 443] {
        let key = format!("egress{port}");
        e.check(
            report.get(&key) == "blocked",
            format!("port {port} is {:?} from the guest", report.get(&key)),
        );
        e.check(
            !vm.hub_saw(port),
            format!("the hub saw a connection on {port}"),
        );
    }
    match report.exposure() {
        Some(x) => e.check(
            x <= MAX_EXPOSURE,
            format!("dosegate.service exposure {x} > {MAX_EXPOSURE}"),
        ),
        None => e.check(
            false,
            format!("no exposure level: {:?}", report.get("security")),
        ),
    }
    e.check(
        report.get("suid") == "0",
        format!("{} SUID/SGID files", report.get("suid")),
    );
    e.check(
        report.get("getty").is_empty(),
        format!("login units running: {}", report.get("getty")),
    );
    e.check(
        matches!(report.get("rootpw"), "!" | "*"),
        format!("root password field starts with {:?}", report.get("rootpw")),
    );
}

fn assert_firmware_refuses(uki: &Path, what: &str) {
    let Some(art) = artifacts() else { return };
    let disk = must("copy disk", ScratchDisk::copy_of(&art));
    // Given the release's boot entry replaced by `uki`
    let entry = format!("::/EFI/Linux/dosegate_{}+3.efi", art.version);
    must("replace UKI", disk.esp_put(uki, &entry));
    // When the box boots
    let mut vm = must("boot", Machine::boot(&art, &boot_of(disk.path(), false)));
    // Then the firmware refuses to load it, and no kernel starts
    let refusal = vm.wait_for("a secure boot refusal", FIRMWARE, |l| {
        l.contains("Access Denied")
            || l.contains("Security Violation")
            || l.contains("EFI stub")
            || l.contains("DGT ")
    });
    let refusal = must(what, refusal);
    assert!(
        !refusal.contains("EFI stub") && !refusal.contains("DGT "),
        "{what} was booted: {refusal}"
    );
    let later = vm.wait_for("a kernel", Duration::from_secs(15), |l| {
        l.contains("EFI stub") || l.contains("Linux version") || l.contains("DGT ")
    });
    assert!(
        later.is_err(),
        "{what}: a kernel started after the refusal: {later:?}"
    );
    eprintln!(
        "{what}: refused after {:.1}s: {refusal}",
        vm.elapsed().as_secs_f64()
    );
}

/// A UKI without any signature is not started by the firmware.
#[test]
fn unsigned_uki_is_refused_by_secure_boot() {
    let Some(art) = artifacts() else { return };
    assert_firmware_refuses(&art.uki_unsigned, "unsigned UKI");
}

/// A UKI signed with a key that is not in db is not started by the firmware.
#[test]
fn uki_signed_with_a_foreign_key_is_refused_by_secure_boot() {
    let Some(art) = artifacts() else { return };
    assert_firmware_refuses(&art.uki_foreign, "foreign-signed UKI");
}

/// Four bytes changed at the start of root slot A: dm-verity refuses the block and the kernel
/// stops (panic-on-corruption) before any service starts.
#[test]
fn modified_root_partition_is_refused_by_verity() {
    let Some(art) = artifacts() else { return };
    let disk = must("copy disk", ScratchDisk::copy_of(&art));
    let start = must("layout", art.partition_start(2));
    must("tamper", disk.overwrite(start, 0, b"EVIL"));
    let mut vm = must("boot", Machine::boot(&art, &boot_of(disk.path(), false)));
    let seen = vm.wait_for("a verity refusal", BOOT, |l| {
        l.contains("verity") && l.contains("corrupted")
            || l.contains("Kernel panic")
            || l.contains("DGT ")
    });
    let seen = must("verity", seen);
    assert!(!seen.contains("DGT "), "the tampered root booted: {seen}");
    eprintln!(
        "tampered root refused after {:.1}s: {seen}",
        vm.elapsed().as_secs_f64()
    );
    assert!(
        vm.console()
            .iter()
            .any(|l| l.contains("verity") && l.contains("corrupted")),
        "no dm-verity corruption message before: {seen}"
    );
}

/// An update whose health check fails (its dosegate.service never becomes active) is booted once
/// from slot B with one try, the health gate reboots, and sd-boot falls back to the release in
/// slot A, which comes up healthy.
#[test]
fn failing_update_rolls_back_to_the_previous_slot() {
    let Some(art) = artifacts() else { return };
    let disk = must("copy disk", ScratchDisk::copy_of(&art));
    let next = format!("{}.1", art.version);
    // Given the next release installed into slot B with one boot attempt
    let installed = must("install", disk.install_update(&art, &art.failing_update, 1));
    eprintln!("{installed}");
    let entries = must("ESP", disk.esp_list("::/EFI/Linux"));
    assert!(
        entries
            .iter()
            .any(|f| f.contains(&format!("dosegate_{next}+1"))),
        "ESP entries: {entries:?}"
    );
    // When the box boots (reboots allowed)
    let mut vm = must("boot", Machine::boot(&art, &boot_of(disk.path(), true)));
    // Then the new release boots first and fails its health check
    let fail = must(
        "health failure of the update",
        vm.wait_for("DOSEGATE-HEALTH-FAIL", BOOT, |l| {
            l.contains("DOSEGATE-HEALTH-FAIL") || l.contains("DGT-END")
        }),
    );
    assert!(
        fail.contains(&format!("version={next} ")),
        "unexpected: {fail}"
    );
    // And after the reboot the previous release runs, healthy
    let report = must("report after rollback", vm.report(BOOT));
    eprintln!(
        "rolled back after {:.1}s: {:#?}",
        vm.elapsed().as_secs_f64(),
        report.entries()
    );
    assert_eq!(report.get("version"), art.version, "not rolled back");
    assert_eq!(report.get("dosegate"), "active");
    assert_eq!(report.get("health"), "active");
}

/// The installer checks the bundle before writing anything: a changed byte or another signer is
/// refused with exit code 3 and the disk is left as it was.
#[test]
fn installer_refuses_tampered_or_foreign_bundles() {
    let Some(art) = artifacts() else { return };
    let disk = must("copy disk", ScratchDisk::copy_of(&art));
    let work = must("workdir", WorkDir::new("bundle"));
    let digest = || {
        let out = std::process::Command::new("sha256sum")
            .arg(disk.path())
            .output()
            .expect("sha256sum");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let before = digest();
    // A byte of the root image flipped, signature untouched.
    let mut bundle = std::fs::read(&art.failing_update).expect("read bundle");
    let len = bundle.len();
    if let Some(b) = bundle.get_mut(len / 2) {
        *b ^= 0x40;
    }
    let tampered = work.path().join("tampered.bundle");
    std::fs::write(&tampered, &bundle).expect("write");
    for (bundle, cert, what) in [
        (tampered.as_path(), "bundle.crt", "tampered bundle"),
        (
            art.failing_update.as_path(),
            "foreign-db.crt",
            "bundle checked against another key",
        ),
    ] {
        let out = std::process::Command::new("bash")
            .arg(&art.installer)
            .arg(disk.path())
            .arg(bundle)
            .env("BUNDLE_CERT", art.dir.join("../keys").join(cert))
            .output()
            .expect("run installer");
        assert_eq!(
            out.status.code(),
            Some(3),
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("[bundle-invalid]"),
            "{what}"
        );
    }
    assert_eq!(digest(), before, "the disk was changed");
}

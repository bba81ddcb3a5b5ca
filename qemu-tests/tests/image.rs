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
        bundle_disk: None,
    }
}

/// Installs `bundle` offline with `dosegate update` and returns its exit code, stdout, stderr.
fn install(
    disk: &ScratchDisk,
    art: &Artifacts,
    bundle: &Path,
    key: &Path,
    tries: u8,
) -> (Option<i32>, String, String) {
    let out = must(
        "dosegate update",
        disk.install_update(art, bundle, key, tries),
    );
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    // Given the next release installed into slot B with one boot attempt (by dosegate update)
    let (code, out, err) = install(&disk, &art, &art.failing_update, &art.bundle_key, 1);
    assert_eq!(code, Some(0), "dosegate update: {out}{err}");
    eprintln!("{out}");
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

/// `dosegate update` checks the bundle before it makes anything bootable: another signer is
/// refused before the disk is touched (byte for byte); a changed byte of the payload stops the
/// install with slot A and the boot entries as they were (slot B is left marked empty).
#[test]
fn installer_refuses_tampered_or_foreign_bundles() {
    let Some(art) = artifacts() else { return };
    let disk = must("copy disk", ScratchDisk::copy_of(&art));
    let work = must("workdir", WorkDir::new("bundle"));
    let digest = || std::fs::read(disk.path()).expect("read disk");
    let before = digest();
    // Another key.
    let (code, out, err) = install(&disk, &art, &art.failing_update, &art.foreign_bundle_key, 3);
    assert_eq!(code, Some(3), "foreign key: {out}{err}");
    assert!(err.contains("[bad-signature]"), "{err}");
    assert!(
        digest() == before,
        "the disk was changed by a refused signature"
    );
    // A byte of the payload flipped, signature untouched.
    let mut bundle = std::fs::read(&art.failing_update).expect("read bundle");
    let len = bundle.len();
    if let Some(b) = bundle.get_mut(len / 2) {
        *b ^= 0x40;
    }
    let tampered = work.path().join("tampered.bundle");
    std::fs::write(&tampered, &bundle).expect("write");
    let entries = must("ESP", disk.esp_list("::/EFI/Linux"));
    let (code, out, err) = install(&disk, &art, &tampered, &art.bundle_key, 3);
    assert_eq!(code, Some(3), "tampered: {out}{err}");
    assert!(err.contains("[digest-mismatch]"), "{err}");
    assert_eq!(
        must("ESP", disk.esp_list("::/EFI/Linux")),
        entries,
        "boot entries changed"
    );
    let sector = 512;
    let a_start = usize::try_from(must("layout", art.partition_start(2)) * sector).expect("usize");
    let b_start = usize::try_from(must("layout", art.partition_start(4)) * sector).expect("usize");
    let after = digest();
    assert!(
        after.get(a_start..b_start) == before.get(a_start..b_start),
        "slot A changed"
    );
}

/// The gateway updates itself: a good bundle (the next release, `<version>.2`) dropped into its
/// update folder (here by a test unit copying it from a second virtio disk, standing in for the
/// fleet link's download) starts dosegate-update.service, which verifies it, writes slot B and
/// the boot entry, and reboots; sd-boot then boots the new release from slot B.
#[test]
fn gateway_installs_a_good_update_and_boots_it() {
    let Some(art) = artifacts() else { return };
    let disk = must("copy disk", ScratchDisk::copy_of(&art));
    let next = format!("{}.2", art.version);
    let mut boot = boot_of(disk.path(), true);
    boot.credentials
        .push(("dosegate.test-update".to_owned(), b"1".to_vec()));
    boot.bundle_disk = Some(art.good_update.clone());
    let mut vm = must("boot", Machine::boot(&art, &boot));
    // Given the bundle dropped into /var/lib/dosegate/update
    must(
        "bundle dropped",
        vm.wait_for("DOSEGATE-TEST-BUNDLE-DROPPED", BOOT, |l| {
            l.contains("DOSEGATE-TEST-BUNDLE-DROPPED")
        }),
    );
    // When dosegate update runs on the box
    let result = must(
        "dosegate update result",
        vm.wait_for("the updater's result", BOOT, |l| {
            l.contains("\"installed\":")
        }),
    );
    assert!(
        result.contains("\"installed\":true"),
        "update failed: {result}"
    );
    assert!(result.contains("\"slot\":\"B\""), "{result}");
    let installed_at = vm.elapsed().as_secs_f64();
    eprintln!("bench: update_installed_at_s={installed_at:.1} {result}");
    // Then after the reboot the new release runs from slot B
    let health = must(
        "health of the new release",
        vm.wait_for("the new release's health check", BOOT, |l| {
            l.contains("DOSEGATE-HEALTH-") && l.contains(&format!("version={next} "))
        }),
    );
    eprintln!(
        "new release up after {:.1}s: {health}",
        vm.elapsed().as_secs_f64()
    );
    assert!(
        health.contains("DOSEGATE-HEALTH-OK"),
        "the new release booted but is not healthy: {health}"
    );
    let report = must("report of the new release", vm.report(BOOT));
    assert_eq!(report.get("version"), next);
    assert_eq!(report.get("dosegate"), "active");
    assert!(
        report
            .get("bootentry")
            .contains(&format!("dosegate_{next}")),
        "boot entry {:?}",
        report.get("bootentry")
    );
}

//! `dosegate update` on disk image files made by the real `sfdisk` (as `os-image/steps/40-disk.sh`
//! makes them) with bundles archived by the real `tar`; the result is read back with `sfdisk`.

use std::path::{Path, PathBuf};
use std::process::Command;

use p256::ecdsa::signature::hazmat::PrehashSigner as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest, Sha256};

use super::*;

const RUNNING: &str = "1111111111111111111111111111111122222222222222222222222222222222";
const NEW: &str = "3333333333333333333333333333333344444444444444444444444444444444";

fn uuid(h: &str) -> String {
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

fn sh(cmd: &mut Command) -> String {
    let out = cmd.output().expect("run tool");
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

struct Box_ {
    dir: tempfile::TempDir,
    target: Target,
    signer: SigningKey,
    key: BundleKey,
}

impl Box_ {
    /// A 12 MiB disk with ESP, root/verity A (running 0.1.0), empty B, state.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path();
        let disk = d.join("disk.raw");
        File::create(&disk)
            .and_then(|f| f.set_len(12 << 20))
            .expect("disk");
        let root_t = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709";
        let verity_t = "2C7357ED-EBD2-46D9-AEC1-23D437EC2BF5";
        let script = format!(
            "label: gpt\nunit: sectors\n\
             size=1MiB, type=C12A7328-F81F-11D2-BA4B-00A0C93EC93B, name=\"ESP\"\n\
             size=3MiB, type={root_t}, uuid={}, name=\"dosegate_0.1.0\"\n\
             size=512KiB, type={verity_t}, uuid={}, name=\"dosegate_0.1.0_verity\"\n\
             size=3MiB, type={root_t}, uuid=8A5B0E3D-45C1-4B4E-9D1B-D05E6A7E00B2, name=\"_empty\"\n\
             size=512KiB, type={verity_t}, uuid=8A5B0E3D-45C1-4B4E-9D1B-D05E6A7E00B3, name=\"_empty\"\n\
             size=1MiB, type=0FC63DAF-8483-4772-8E79-3D69D8477DE4, name=\"dosegate-state\"\n",
            uuid(&RUNNING[..32]),
            uuid(&RUNNING[32..])
        );
        let mut child = Command::new("sfdisk")
            .args(["-q", "--no-reread", "--no-tell-kernel"])
            .arg(&disk)
            .stdin(std::process::Stdio::piped())
            .spawn()
            .expect("sfdisk");
        std::io::Write::write_all(child.stdin.as_mut().expect("stdin"), script.as_bytes())
            .expect("script");
        assert!(child.wait().expect("wait").success());
        std::fs::create_dir_all(d.join("esp/EFI/Linux")).expect("esp");
        std::fs::write(d.join("esp/EFI/Linux/dosegate_0.1.0+3.efi"), b"old uki").expect("uki");
        std::fs::write(d.join("cmdline"), format!("roothash={RUNNING} ro quiet\n")).expect("w");
        std::fs::write(d.join("os-release"), "ID=debian\nIMAGE_VERSION=0.1.0\n").expect("w");
        let signer = SigningKey::from_slice(&[5; 32]).expect("key");
        let pem = signer
            .verifying_key()
            .to_public_key_pem(p256::pkcs8::LineEnding::LF)
            .expect("pem");
        let target = Target {
            disk: Some(disk),
            esp: Some(d.join("esp")),
            cmdline: d.join("cmdline"),
            os_release: d.join("os-release"),
        };
        Self {
            key: BundleKey::from_pem(&pem).expect("key"),
            dir,
            target,
            signer,
        }
    }

    fn disk(&self) -> &Path {
        self.target.disk.as_deref().expect("disk")
    }

    /// A bundle with `version` and root hash `rh`, signed by `signer`; `edit` may change the
    /// payload after the manifest was made.
    fn bundle(
        &self,
        version: &str,
        rh: &str,
        signer: &SigningKey,
        edit: impl Fn(&Path),
    ) -> PathBuf {
        let w = self.dir.path().join(format!("b-{version}-{}", &rh[..4]));
        std::fs::create_dir_all(&w).expect("dir");
        let files = [
            ("root.img", 700_001usize, 7u8),
            ("root.verity", 20_000, 9),
            ("uki.efi", 50_000, 11),
        ];
        let mut entries = Vec::new();
        for (name, len, seed) in files {
            let bytes: Vec<u8> = (0..len)
                .map(|i| u8::try_from(i % 256).expect("byte").wrapping_mul(seed))
                .collect();
            std::fs::write(w.join(name), &bytes).expect("w");
            entries.push(format!(
                "\"{name}\":{{\"sha256\":\"{}\",\"size\":{len}}}",
                hex::encode(Sha256::digest(&bytes))
            ));
        }
        let manifest = format!(
            "{{\"format\":\"dosegate-bundle-1\",\"version\":\"{version}\",\"roothash\":\"{rh}\",\"pcr11\":\"{}\",\"files\":{{{}}}}}",
            "cd".repeat(32),
            entries.join(",")
        );
        std::fs::write(w.join("manifest.json"), &manifest).expect("w");
        let digest: [u8; 32] = Sha256::digest(manifest.as_bytes()).into();
        let sig: Signature = signer.sign_prehash(&digest).expect("sign");
        std::fs::write(w.join("manifest.sig"), sig.to_der().as_bytes()).expect("w");
        edit(&w);
        let out = w.join("update.bundle");
        sh(Command::new("tar")
            .args(["--owner=0", "--group=0", "--numeric-owner", "-C"])
            .arg(&w)
            .arg("-cf")
            .arg(&out)
            .args([
                "manifest.json",
                "manifest.sig",
                "root.img",
                "root.verity",
                "uki.efi",
            ]));
        out
    }

    fn install(&self, bundle: &Path, tries: u8) -> Result<Installed, UpdateFailure> {
        let mut r = BufReader::new(File::open(bundle).expect("bundle"));
        install(&mut r, &self.key, tries, &self.target, &mut |_| {})
    }

    fn dump(&self) -> String {
        sh(Command::new("sfdisk").arg("--dump").arg(self.disk()))
    }

    fn esp(&self) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(self.dir.path().join("esp/EFI/Linux"))
            .expect("ls")
            .map(|e| e.expect("e").file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    fn digest(&self) -> Vec<u8> {
        Sha256::digest(std::fs::read(self.disk()).expect("read")).to_vec()
    }
}

fn line(dump: &str, n: u32) -> &str {
    dump.lines()
        .find(|l| l.contains(&format!("disk.raw{n} ")))
        .unwrap_or_else(|| panic!("no partition {n} in {dump}"))
}

fn start_of(dump: &str, n: u32) -> u64 {
    let l = line(dump, n);
    let s = l.split("start=").nth(1).expect("start");
    s.split(',').next().expect("n").trim().parse().expect("num")
}

#[test]
fn installs_into_the_inactive_slot_and_publishes_the_entry_last() {
    let b = Box_::new();
    let bundle = b.bundle("0.1.0.2", NEW, &b.signer, |_| {});
    let done = b.install(&bundle, 2).expect("installed");
    assert_eq!((done.slot, done.partitions), ('B', (4, 5)));
    assert_eq!(done.entry, "dosegate_0.1.0.2+2.efi");
    assert_eq!(done.bytes, 700_001 + 20_000 + 50_000);

    // sfdisk reads the table we wrote: new names and UUIDs, slot A untouched, table valid.
    let dump = b.dump();
    let l4 = line(&dump, 4).to_ascii_lowercase();
    assert!(
        l4.contains(&uuid(&NEW[..32])) && l4.contains("name=\"dosegate_0.1.0.2\""),
        "{l4}"
    );
    let l5 = line(&dump, 5).to_ascii_lowercase();
    assert!(
        l5.contains(&uuid(&NEW[32..])) && l5.contains("dosegate_0.1.0.2_verity"),
        "{l5}"
    );
    assert!(
        line(&dump, 2)
            .to_ascii_lowercase()
            .contains(&uuid(&RUNNING[..32]))
    );
    sh(Command::new("sfdisk").arg("--verify").arg(b.disk()));

    // The bytes are in the partitions, the UKI in the ESP.
    let disk = std::fs::read(b.disk()).expect("read");
    let w = bundle.parent().expect("dir");
    let at = usize::try_from(start_of(&dump, 4) * 512).expect("usize");
    assert_eq!(
        &disk[at..at + 700_001],
        std::fs::read(w.join("root.img")).expect("r")
    );
    let at = usize::try_from(start_of(&dump, 5) * 512).expect("usize");
    assert_eq!(
        &disk[at..at + 20_000],
        std::fs::read(w.join("root.verity")).expect("r")
    );
    assert_eq!(b.esp(), ["dosegate_0.1.0+3.efi", "dosegate_0.1.0.2+2.efi"]);
    assert_eq!(
        std::fs::read(b.dir.path().join("esp/EFI/Linux/dosegate_0.1.0.2+2.efi")).expect("r"),
        std::fs::read(w.join("uki.efi")).expect("r")
    );

    // Booted into B, the next update goes to A and takes 0.1.0's entries out of the ESP.
    std::fs::write(&b.target.cmdline, format!("roothash={NEW}\n")).expect("w");
    std::fs::write(&b.target.os_release, "IMAGE_VERSION=0.1.0.2\n").expect("w");
    let next = b.bundle("0.1.0.3", &"5".repeat(64), &b.signer, |_| {});
    let done = b.install(&next, 3).expect("second");
    assert_eq!(
        (done.slot, done.removed_entries.as_slice()),
        ('A', ["dosegate_0.1.0+3.efi".to_owned()].as_slice())
    );
    assert_eq!(
        b.esp(),
        ["dosegate_0.1.0.2+2.efi", "dosegate_0.1.0.3+3.efi"]
    );
    assert!(line(&b.dump(), 2).contains("dosegate_0.1.0.3"));
}

#[test]
fn refuses_foreign_signer_rollback_and_same_root_without_touching_the_disk() {
    let b = Box_::new();
    let before = b.digest();
    let other = SigningKey::from_slice(&[6; 32]).expect("key");
    for (bundle, code, exit) in [
        (b.bundle("0.1.0.2", NEW, &other, |_| {}), "bad-signature", 3),
        (b.bundle("0.1.0", NEW, &b.signer, |_| {}), "not-newer", 4),
        (b.bundle("0.0.9", NEW, &b.signer, |_| {}), "not-newer", 4),
        (
            b.bundle("0.1.0.2", RUNNING, &b.signer, |_| {}),
            "same-root",
            4,
        ),
    ] {
        let err = b.install(&bundle, 3).unwrap_err();
        assert_eq!((err.code(), err.exit_code()), (code, exit), "{err}");
    }
    assert_eq!(b.digest(), before, "disk changed");
    assert_eq!(b.esp(), ["dosegate_0.1.0+3.efi"]);
}

#[test]
fn a_changed_payload_byte_leaves_the_slot_empty_and_no_entry() {
    let b = Box_::new();
    let bundle = b.bundle("0.1.0.2", NEW, &b.signer, |w| {
        let p = w.join("root.verity");
        let mut bytes = std::fs::read(&p).expect("r");
        bytes[123] ^= 1;
        std::fs::write(p, bytes).expect("w");
    });
    let err = b.install(&bundle, 3).unwrap_err();
    assert!(
        matches!(
            &err,
            UpdateFailure::Refused(UpdateError::DigestMismatch {
                file: "root.verity",
                ..
            })
        ),
        "{err}"
    );
    assert_eq!(err.exit_code(), 3);
    assert_eq!(
        b.esp(),
        ["dosegate_0.1.0+3.efi"],
        "no entry, no temporary file"
    );
    let dump = b.dump();
    assert!(line(&dump, 4).contains("name=\"_empty\""));
    assert!(line(&dump, 2).contains("dosegate_0.1.0\""));
}

#[test]
fn refuses_a_truncated_bundle_and_a_bundle_with_path_tricks() {
    let b = Box_::new();
    let good = b.bundle("0.1.0.2", NEW, &b.signer, |_| {});
    let bytes = std::fs::read(&good).expect("r");
    let cut = b.dir.path().join("cut.bundle");
    std::fs::write(&cut, &bytes[..400_000]).expect("w");
    let err = b.install(&cut, 3).unwrap_err();
    assert_eq!(err.code(), "archive", "{err}");
    assert_eq!(b.esp(), ["dosegate_0.1.0+3.efi"]);

    let w = good.parent().expect("dir");
    let tricky = b.dir.path().join("tricky.bundle");
    sh(Command::new("tar")
        .arg("-C")
        .arg(w)
        .arg("-cf")
        .arg(&tricky)
        .args([
            "./manifest.json",
            "manifest.sig",
            "root.img",
            "root.verity",
            "uki.efi",
        ]));
    let before = b.digest();
    assert_eq!(b.install(&tricky, 3).unwrap_err().code(), "archive");
    assert_eq!(b.digest(), before);
}

#[test]
fn refuses_a_disk_without_the_running_root() {
    let b = Box_::new();
    std::fs::write(&b.target.cmdline, format!("roothash={}\n", "7".repeat(64))).expect("w");
    let bundle = b.bundle("0.1.0.2", NEW, &b.signer, |_| {});
    let err = b.install(&bundle, 3).unwrap_err();
    assert_eq!((err.code(), err.exit_code()), ("running-slot-unknown", 5));
}

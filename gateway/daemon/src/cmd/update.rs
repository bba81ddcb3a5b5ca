//! `dosegate update`: installs a signed update bundle into the inactive A/B slot of the running
//! box, from the box itself.
//!
//! Order of work (each step only after the previous succeeded):
//! 1. read `manifest.json` and `manifest.sig` from the bundle (bounded) and verify the signature
//!    with the bundle key baked into the read-only root; anti-rollback against the running
//!    `IMAGE_VERSION`;
//! 2. find the running slot (the root partition whose UUID is the first half of `roothash=` on
//!    the kernel command line) and plan the other one (`dosegate_core::update::plan`);
//! 3. make the target slot unbootable first: remove its old boot entries from the ESP, rename
//!    its partitions `_empty` with neutral UUIDs;
//! 4. stream `root.img` and `root.verity` into the target partitions and `uki.efi` into a
//!    temporary file in the ESP, hashing as they pass; any size or digest mismatch stops here;
//! 5. fsync the disk, name the partitions by the new root hash (UUIDs = its halves, labels
//!    `dosegate_<version>[_verity]`), and publish the UKI as `dosegate_<version>+<tries>.efi`.
//!
//! An interruption before step 5 leaves the running release and its entry untouched and the
//! target slot empty; the boot entry appears last. Decisions live in `dosegate_core::update`;
//! the disk and ESP in `crate::bootdisk`.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use dosegate_core::update::tar::{BLOCK, BundleArchive, Member, Next};
use dosegate_core::update::{
    BundleFile, BundleKey, FileCheck, SignedManifest, UpdateError, UpdatePlan, Version, empty_uuid,
    partuuid_of, plan, verify_manifest,
};
use serde::Serialize;

use crate::bootdisk::{Disk, DiskError, Esp, find_disk, running_roothash};
use crate::cmd::health::image_version;

const AFTER_HELP: &str = "\
Examples:
  dosegate update --bundle /var/lib/dosegate/update/dosegate.bundle
  dosegate update --bundle /dev/vdb --tries 1 --json
  # offline, on a disk image (the ESP's EFI/Linux staged in a folder):
  dosegate update --bundle B --disk disk.raw --esp staged-esp --cmdline cmdline --os-release os-release

The bundle is a tar of manifest.json, manifest.sig, root.img, root.verity, uki.efi (made by
`make image`). Nothing is written before the manifest's signature verifies; the new boot entry is
written last, so sd-boot boots the update only once every byte matched. The entry gets TRIES boot
attempts: dosegate-health.service must pass within them, or sd-boot falls back to this release.
Progress goes to stderr (JSON lines with --json); the result to stdout.

Exit codes (error codes in brackets, stable):
  0  installed; reboot to start it
  2  bad command line
  3  bundle refused: signature, manifest, archive, size or digest [bad-signature] [manifest-syntax]
     [manifest-too-large] [unknown-format] [bad-version] [bad-hex] [archive] [file-too-large]
     [size-mismatch] [digest-mismatch]
  4  not newer than the running release (anti-rollback) or the running root itself [not-newer]
     [same-root] [bad-tries]
  5  disk layout: no A/B GPT, running slot not found [disk-layout] [running-slot-unknown]
     [disk-not-found] [no-roothash]
  6  does not fit the slot [does-not-fit]
  7  I/O error reading the bundle or writing the disk or the ESP [io]
  8  bundle key unreadable or not a P-256 key [bad-key]";

/// Install a signed update bundle into the inactive slot (run on the box, as root).
#[derive(Debug, clap::Args)]
#[command(after_help = AFTER_HELP)]
pub struct Args {
    /// The bundle: a file, or a block device holding one.
    #[arg(long, value_name = "FILE")]
    bundle: PathBuf,
    /// Boot attempts the new entry gets before sd-boot falls back (1–9).
    #[arg(long, value_name = "N", default_value_t = 3)]
    tries: u8,
    /// Print the result as one JSON object (and progress as JSON lines on stderr).
    #[arg(long)]
    json: bool,
    /// The bundle key (PEM public key), baked into the read-only root.
    #[arg(
        long,
        value_name = "FILE",
        default_value = "/usr/share/dosegate/update-key.pem"
    )]
    key: PathBuf,
    /// The disk to update (default: the disk holding the running root).
    #[arg(long, value_name = "DEV")]
    disk: Option<PathBuf>,
    /// The mounted ESP (default: /efi or /boot, whichever holds EFI/Linux).
    #[arg(long, value_name = "DIR")]
    esp: Option<PathBuf>,
    /// The kernel command line naming the running root hash.
    #[arg(long, value_name = "FILE", default_value = "/proc/cmdline")]
    cmdline: PathBuf,
    /// The os-release naming the running version.
    #[arg(long, value_name = "FILE", default_value = "/usr/lib/os-release")]
    os_release: PathBuf,
}

/// Why an update stopped.
#[derive(Debug, thiserror::Error)]
pub enum UpdateFailure {
    /// The bundle or the plan was refused.
    #[error(transparent)]
    Refused(#[from] UpdateError),
    /// The disk or the ESP.
    #[error(transparent)]
    Disk(#[from] DiskError),
    /// Reading the bundle or the key failed.
    #[error("{what}")]
    Io {
        /// What was being read.
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The running version is not known.
    #[error("running version {value:?} in the os-release is not a version")]
    RunningVersion {
        /// The value read.
        value: String,
    },
}

impl UpdateFailure {
    /// The stable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused(e) => e.code(),
            Self::Disk(DiskError::Layout { source, .. }) => source.code(),
            Self::Disk(DiskError::NotFound { .. }) => "disk-not-found",
            Self::Disk(DiskError::NoRootHash { .. }) => "no-roothash",
            Self::Disk(DiskError::Io { .. }) | Self::Io { .. } => "io",
            Self::RunningVersion { .. } => "bad-version",
        }
    }

    /// The exit code (see `--help`).
    pub fn exit_code(&self) -> u8 {
        match self.code() {
            "not-newer" | "same-root" | "bad-tries" => 4,
            "disk-layout" | "running-slot-unknown" | "disk-not-found" | "no-roothash" => 5,
            "does-not-fit" => 6,
            "io" => 7,
            "bad-key" => 8,
            _ => 3,
        }
    }
}

/// What was installed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Installed {
    /// The version.
    pub version: String,
    /// The slot written (`A` or `B`).
    pub slot: char,
    /// Its root and verity partition numbers.
    pub partitions: (u32, u32),
    /// The disk.
    pub disk: PathBuf,
    /// The boot entry published.
    pub entry: String,
    /// Its root hash.
    pub roothash: String,
    /// Boot entries of the replaced release removed from the ESP.
    pub removed_entries: Vec<String>,
    /// Bytes written (root + verity + UKI).
    pub bytes: u64,
    /// Wall time.
    pub seconds: f64,
}

/// Where the installer reads and writes.
#[derive(Debug, Clone)]
pub struct Target {
    /// The disk (None: find the one holding the running root).
    pub disk: Option<PathBuf>,
    /// The ESP (None: /efi or /boot).
    pub esp: Option<PathBuf>,
    /// The kernel command line file.
    pub cmdline: PathBuf,
    /// The os-release file.
    pub os_release: PathBuf,
}

/// A progress event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Progress<'a> {
    /// The manifest verified.
    Verified {
        /// Version.
        version: &'a str,
    },
    /// The slot was chosen.
    Planned {
        /// Slot name.
        slot: char,
        /// The disk.
        disk: &'a Path,
    },
    /// Bytes of a file written.
    Writing {
        /// The file.
        file: &'static str,
        /// Done.
        bytes: u64,
        /// Total.
        total: u64,
    },
    /// Done.
    Committed {
        /// The entry.
        entry: &'a str,
    },
}

fn read_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> UpdateFailure {
    let what = what.into();
    move |source| UpdateFailure::Io { what, source }
}

/// Reads one tar block, or fails with an archive error at a short read.
fn read_block(r: &mut impl Read) -> Result<[u8; BLOCK], UpdateFailure> {
    let mut block = [0u8; BLOCK];
    r.read_exact(&mut block).map_err(|e| {
        if e.kind() == io::ErrorKind::UnexpectedEof {
            UpdateFailure::Refused(UpdateError::Archive {
                reason: "archive truncated".into(),
            })
        } else {
            UpdateFailure::Io {
                what: "read the bundle".into(),
                source: e,
            }
        }
    })?;
    Ok(block)
}

fn expect_member(
    archive: &mut BundleArchive,
    r: &mut impl Read,
    want: Member,
) -> Result<(u64, u64), UpdateFailure> {
    match archive.next_header(&read_block(r)?)? {
        Next::Entry {
            member,
            size,
            padding,
        } if member == want => Ok((size, padding)),
        other => Err(UpdateError::Archive {
            reason: format!("expected {}, found {other:?}", want.name()),
        }
        .into()),
    }
}

/// Reads a small member whole (its size was bounded by the header parser).
fn read_small(r: &mut impl Read, size: u64, padding: u64) -> Result<Vec<u8>, UpdateFailure> {
    let mut bytes = Vec::new();
    r.take(size)
        .read_to_end(&mut bytes)
        .map_err(read_err("read the bundle"))?;
    if bytes.len() as u64 != size {
        return Err(UpdateError::Archive {
            reason: "archive truncated".into(),
        }
        .into());
    }
    skip(r, padding)?;
    Ok(bytes)
}

fn skip(r: &mut impl Read, n: u64) -> Result<(), UpdateFailure> {
    let copied = io::copy(&mut r.take(n), &mut io::sink()).map_err(read_err("read the bundle"))?;
    if copied == n {
        Ok(())
    } else {
        Err(UpdateError::Archive {
            reason: "archive truncated in padding".into(),
        }
        .into())
    }
}

/// Streams one payload member through its check into `sink`, reporting progress.
fn stream(
    r: &mut impl Read,
    signed: &SignedManifest,
    file: BundleFile,
    archive: &mut BundleArchive,
    mut sink: impl FnMut(u64, &[u8]) -> Result<(), UpdateFailure>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<dosegate_core::update::VerifiedFile, UpdateFailure> {
    let (size, padding) = expect_member(archive, r, Member::Payload(file))?;
    let mut check = FileCheck::new(signed, file, size)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut next_report = 0u64;
    while check.seen() < size {
        let want = usize::try_from((size - check.seen()).min(buf.len() as u64)).unwrap_or(0);
        let chunk = buf.get_mut(..want).unwrap_or_default();
        r.read_exact(chunk).map_err(|e| {
            if e.kind() == io::ErrorKind::UnexpectedEof {
                UpdateFailure::Refused(UpdateError::Archive {
                    reason: format!("{} truncated", file.name()),
                })
            } else {
                UpdateFailure::Io {
                    what: "read the bundle".into(),
                    source: e,
                }
            }
        })?;
        let at = check.seen();
        check.update(chunk)?;
        sink(at, chunk)?;
        if check.seen() >= next_report || check.seen() == size {
            progress(Progress::Writing {
                file: file.name(),
                bytes: check.seen(),
                total: size,
            });
            next_report = check.seen() + size / 10 + 1;
        }
    }
    skip(r, padding)?;
    Ok(check.finish()?)
}

/// Installs the bundle read from `bundle` (positioned at its start). The whole procedure of the
/// module documentation, in order, in one place; returns what was installed.
#[expect(
    clippy::too_many_lines,
    reason = "the five steps read best top to bottom"
)]
pub fn install(
    bundle: &mut impl Read,
    key: &BundleKey,
    tries: u8,
    target: &Target,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Installed, UpdateFailure> {
    let started = Instant::now();
    // 1. the signed manifest, before anything else
    let mut archive = BundleArchive::new();
    let (size, padding) = expect_member(&mut archive, bundle, Member::Manifest)?;
    let manifest = read_small(bundle, size, padding)?;
    let (size, padding) = expect_member(&mut archive, bundle, Member::Signature)?;
    let signature = read_small(bundle, size, padding)?;
    let signed = verify_manifest(&manifest, &signature, key)?;
    let version = signed.manifest().version.to_string();
    progress(Progress::Verified { version: &version });

    // 2. the running slot and the plan
    let running_text = image_version(&target.os_release);
    let running = Version::parse(&running_text).map_err(|_| UpdateFailure::RunningVersion {
        value: running_text.clone(),
    })?;
    let running_hash = running_roothash(&target.cmdline)?;
    let disk_path = if let Some(p) = &target.disk {
        p.clone()
    } else {
        let mut half = [0u8; 16];
        half.copy_from_slice(running_hash.get(..16).unwrap_or(&[0; 16]));
        find_disk(partuuid_of(&half))?
    };
    let disk = Disk::open(&disk_path)?;
    let table = disk.table()?;
    let plan: UpdatePlan = plan(&signed, &table, &running_hash, &running, tries)?;
    progress(Progress::Planned {
        slot: plan.target.name,
        disk: &disk_path,
    });
    let esp = match &target.esp {
        Some(dir) => Esp::at(dir)?,
        None => Esp::locate()?,
    };

    // 3. the target slot unbootable first
    let removed_entries = match &plan.replaced {
        Some(v) => esp.remove_version(v)?,
        None => Vec::new(),
    };
    let emptied = table
        .with_identity(plan.target.root, empty_uuid(plan.target.root), "_empty")?
        .with_identity(plan.target.verity, empty_uuid(plan.target.verity), "_empty")?;
    disk.write_table(&emptied)?;

    // 4. the payload, hashed while written
    let (root_at, _) = plan.root_extent;
    let (verity_at, _) = plan.verity_extent;
    let root = stream(
        bundle,
        &signed,
        BundleFile::Root,
        &mut archive,
        |at, chunk| Ok(disk.write_at(root_at + at, chunk)?),
        progress,
    )?;
    let verity = stream(
        bundle,
        &signed,
        BundleFile::Verity,
        &mut archive,
        |at, chunk| Ok(disk.write_at(verity_at + at, chunk)?),
        progress,
    )?;
    let mut entry = esp.begin()?;
    let uki = stream(
        bundle,
        &signed,
        BundleFile::Uki,
        &mut archive,
        |_, chunk| Ok(entry.write(chunk)?),
        progress,
    );
    let uki = match uki.and_then(|u| match archive.next_header(&read_block(bundle)?)? {
        Next::End => Ok(u),
        Next::Entry { member, .. } => Err(UpdateError::Archive {
            reason: format!("unexpected {} after uki.efi", member.name()),
        }
        .into()),
    }) {
        Ok(u) => u,
        Err(e) => {
            esp.discard(entry);
            return Err(e);
        }
    };
    let files = [root, verity, uki];
    let payload = plan.commit(&files)?;
    let plan = payload.plan();

    // 5. commit: data on disk, slot named, entry published last
    disk.sync()?;
    let named = emptied
        .with_identity(plan.target.root, plan.uuids.0, &plan.labels.0)?
        .with_identity(plan.target.verity, plan.uuids.1, &plan.labels.1)?;
    disk.write_table(&named)?;
    esp.publish(&entry, &plan.entry_name)?;
    progress(Progress::Committed {
        entry: &plan.entry_name,
    });
    Ok(Installed {
        version,
        slot: plan.target.name,
        partitions: (plan.target.root, plan.target.verity),
        disk: disk_path,
        entry: plan.entry_name.clone(),
        roothash: hex::encode(plan.roothash),
        removed_entries,
        bytes: files
            .iter()
            .map(dosegate_core::update::VerifiedFile::size)
            .sum(),
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// Reads the bundle key (bounded) and parses it.
pub fn load_key(path: &Path) -> Result<BundleKey, UpdateFailure> {
    let mut text = String::new();
    File::open(path)
        .and_then(|f| f.take(8192).read_to_string(&mut text))
        .map_err(read_err(format!("read bundle key {}", path.display())))?;
    Ok(BundleKey::from_pem(&text)?)
}

#[derive(Serialize)]
struct Failed<'a> {
    installed: bool,
    code: &'a str,
    error: String,
}

/// Entry point from `main`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    let json = args.json;
    let mut progress = |p: Progress<'_>| {
        if json {
            if let Ok(line) = serde_json::to_string(&p) {
                eprintln!("{line}");
            }
        } else {
            match p {
                Progress::Verified { version } => {
                    eprintln!("update: bundle {version} verified (signature, manifest)");
                }
                Progress::Planned { slot, disk } => {
                    eprintln!("update: writing slot {slot} on {}", disk.display());
                }
                Progress::Writing { file, bytes, total } => eprintln!(
                    "update: {file} {}%",
                    (bytes * 100).checked_div(total).unwrap_or(100)
                ),
                Progress::Committed { entry } => eprintln!("update: boot entry {entry} published"),
            }
        }
    };
    let target = Target {
        disk: args.disk.clone(),
        esp: args.esp.clone(),
        cmdline: args.cmdline.clone(),
        os_release: args.os_release.clone(),
    };
    let result = load_key(&args.key).and_then(|key| {
        let file = File::open(&args.bundle)
            .map_err(read_err(format!("open bundle {}", args.bundle.display())))?;
        let mut reader = BufReader::with_capacity(1 << 20, file);
        install(&mut reader, &key, args.tries, &target, &mut progress)
    });
    match result {
        Ok(done) => {
            if json {
                let mut v = serde_json::to_value(&done)?;
                if let Some(o) = v.as_object_mut() {
                    o.insert("installed".into(), true.into());
                }
                println!("{v}");
            } else {
                println!(
                    "installed {} into slot {} (partitions {}/{}) of {} as {} in {:.1}s; reboot to start it",
                    done.version,
                    done.slot,
                    done.partitions.0,
                    done.partitions.1,
                    done.disk.display(),
                    done.entry,
                    done.seconds
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            let chain = {
                let mut text = e.to_string();
                let mut cause = std::error::Error::source(&e);
                while let Some(c) = cause {
                    text.push_str(": ");
                    text.push_str(&c.to_string());
                    cause = c.source();
                }
                text
            };
            if json {
                println!(
                    "{}",
                    serde_json::to_string(&Failed {
                        installed: false,
                        code: e.code(),
                        error: chain.clone(),
                    })?
                );
            }
            eprintln!("dosegate update: [{}] {chain}", e.code());
            Ok(ExitCode::from(e.exit_code()))
        }
    }
}

#[cfg(test)]
mod tests;

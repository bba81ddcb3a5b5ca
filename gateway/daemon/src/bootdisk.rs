//! The box's boot disk and its EFI system partition, for the updater: positioned reads and writes
//! on the disk (a block device, or an image file offline), its GPT read and written through
//! `dosegate_core::update::gpt`, finding which disk holds the running root, the running root hash
//! from the kernel command line, and boot entries in the ESP's `EFI/Linux` written atomically
//! (temporary file, fsync, rename, fsync of the folder).
//!
//! It decides nothing: the slot, the names and the order of writes come from
//! `dosegate_core::update`.

use std::fs::{File, OpenOptions};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};

use dosegate_core::update::UpdateError;
use dosegate_core::update::gpt::{DiskWrite, Guid, Header, PartitionTable};

/// Sector size the appliance disk uses (the GPT is read at LBA 1 = byte 512).
pub const SECTOR: u64 = 512;
const SECTOR_BYTES: usize = 512;
/// Where boot entries live in the ESP.
pub const ENTRY_DIR: &str = "EFI/Linux";
const TMP_ENTRY: &str = ".dosegate-update.tmp";
const MAX_CMDLINE_BYTES: u64 = 8192;

/// Why the disk or the ESP could not be used.
#[derive(Debug, thiserror::Error)]
pub enum DiskError {
    /// An I/O operation failed.
    #[error("{what}")]
    Io {
        /// What was being done (with the path).
        what: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The partition table is not usable.
    #[error("{path:?}: {source}")]
    Layout {
        /// The disk.
        path: PathBuf,
        /// The reason.
        #[source]
        source: UpdateError,
    },
    /// No disk holds the running root.
    #[error("no disk under /sys/block has a partition with UUID {partuuid}")]
    NotFound {
        /// The UUID looked for.
        partuuid: String,
    },
    /// The kernel command line names no verity root hash.
    #[error("no roothash=/usrhash= of 64 hex digits in {path:?}")]
    NoRootHash {
        /// The file read.
        path: PathBuf,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> DiskError {
    let what = what.into();
    move |source| DiskError::Io { what, source }
}

/// The root hash the running system was booted with: `roothash=` (or `usrhash=`) in the kernel
/// command line file (`/proc/cmdline`), read bounded.
pub fn running_roothash(cmdline: &Path) -> Result<[u8; 32], DiskError> {
    let mut text = String::new();
    File::open(cmdline)
        .and_then(|f| f.take(MAX_CMDLINE_BYTES).read_to_string(&mut text))
        .map_err(io_err(format!("read {}", cmdline.display())))?;
    text.split_ascii_whitespace()
        .find_map(|w| {
            w.strip_prefix("roothash=")
                .or_else(|| w.strip_prefix("usrhash="))
        })
        .and_then(|h| {
            let mut out = [0u8; 32];
            hex::decode_to_slice(h, &mut out).ok().map(|()| out)
        })
        .ok_or_else(|| DiskError::NoRootHash {
            path: cmdline.to_path_buf(),
        })
}

/// A disk opened for update: a block device or an image file.
#[derive(Debug)]
pub struct Disk {
    path: PathBuf,
    file: File,
}

impl Disk {
    /// Opens `path` read-write (nothing is written until asked).
    pub fn open(path: &Path) -> Result<Self, DiskError> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(io_err(format!("open {}", path.display())))?;
        Ok(Self {
            path: path.to_path_buf(),
            file,
        })
    }

    /// The path opened.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn read_at(&self, offset: u64, len: usize) -> Result<Vec<u8>, DiskError> {
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, offset)
            .map_err(io_err(format!("read {} at {offset}", self.path.display())))?;
        Ok(buf)
    }

    /// Writes `bytes` at `offset`.
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> Result<(), DiskError> {
        self.file
            .write_all_at(bytes, offset)
            .map_err(io_err(format!("write {} at {offset}", self.path.display())))
    }

    /// Flushes every write to the device.
    pub fn sync(&self) -> Result<(), DiskError> {
        self.file
            .sync_all()
            .map_err(io_err(format!("fsync {}", self.path.display())))
    }

    /// Reads and checks the GPT: primary header, its entries, the backup header.
    pub fn table(&self) -> Result<PartitionTable, DiskError> {
        let layout = |source| DiskError::Layout {
            path: self.path.clone(),
            source,
        };
        let primary = Header::parse(&self.read_at(SECTOR, SECTOR_BYTES)?).map_err(layout)?;
        let entries = self.read_at(
            primary.entries_lba.saturating_mul(SECTOR),
            primary.entries_len(),
        )?;
        let backup = Header::parse(
            &self.read_at(primary.alternate_lba.saturating_mul(SECTOR), SECTOR_BYTES)?,
        )
        .map_err(layout)?;
        PartitionTable::new(primary, &entries, backup, SECTOR).map_err(layout)
    }

    /// Writes a table (backup copy first) and flushes.
    pub fn write_table(&self, table: &PartitionTable) -> Result<(), DiskError> {
        for DiskWrite { offset, bytes } in table.encode() {
            self.write_at(offset, &bytes)?;
            self.sync()?;
        }
        Ok(())
    }
}

/// Finds the whole disk (under `/sys/block`, skipping loop, dm, ram, zram and optical devices)
/// whose GPT has a partition with UUID `partuuid`.
pub fn find_disk(partuuid: Guid) -> Result<PathBuf, DiskError> {
    let names = std::fs::read_dir("/sys/block").map_err(io_err("list /sys/block"))?;
    let mut names: Vec<String> = names
        .filter_map(Result::ok)
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| {
            !["loop", "dm-", "ram", "zram", "sr"]
                .iter()
                .any(|p| n.starts_with(p))
        })
        .collect();
    names.sort();
    for name in names {
        let dev = Path::new("/dev").join(&name);
        let Ok(disk) = Disk::open(&dev) else { continue };
        if disk
            .table()
            .is_ok_and(|t| t.partitions().iter().any(|p| p.uuid == partuuid))
        {
            return Ok(dev);
        }
    }
    Err(DiskError::NotFound {
        partuuid: partuuid.to_string(),
    })
}

/// The ESP's boot entry folder (`<esp>/EFI/Linux`).
#[derive(Debug)]
pub struct Esp {
    dir: PathBuf,
}

/// A boot entry being written, not yet visible to the boot loader.
#[derive(Debug)]
pub struct PendingEntry {
    file: File,
    tmp: PathBuf,
}

impl PendingEntry {
    /// Appends bytes.
    pub fn write(&mut self, bytes: &[u8]) -> Result<(), DiskError> {
        self.file
            .write_all(bytes)
            .map_err(io_err(format!("write {}", self.tmp.display())))
    }
}

impl Esp {
    /// The ESP mounted at `root` (its `EFI/Linux` must exist).
    pub fn at(root: &Path) -> Result<Self, DiskError> {
        let dir = root.join(ENTRY_DIR);
        if dir.is_dir() {
            Ok(Self { dir })
        } else {
            Err(DiskError::Io {
                what: format!("{} is not an ESP boot entry folder", dir.display()),
                source: io::Error::from(io::ErrorKind::NotFound),
            })
        }
    }

    /// The first of `/efi`, `/boot` that holds `EFI/Linux` (systemd mounts the ESP at one of
    /// them; looking triggers the automount).
    pub fn locate() -> Result<Self, DiskError> {
        ["/efi", "/boot"]
            .iter()
            .find_map(|r| Self::at(Path::new(r)).ok())
            .ok_or_else(|| DiskError::Io {
                what: "no ESP with EFI/Linux at /efi or /boot".into(),
                source: io::Error::from(io::ErrorKind::NotFound),
            })
    }

    /// The entry folder.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// File names in the entry folder.
    pub fn entries(&self) -> Result<Vec<String>, DiskError> {
        let mut names: Vec<String> = std::fs::read_dir(&self.dir)
            .map_err(io_err(format!("list {}", self.dir.display())))?
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        Ok(names)
    }

    /// Removes every boot entry of `version` (`dosegate_<version>.efi` and its boot-counted
    /// forms `dosegate_<version>+N[-M].efi`), then flushes the folder. Returns the names removed.
    pub fn remove_version(&self, version: &str) -> Result<Vec<String>, DiskError> {
        let plain = format!("dosegate_{version}.efi");
        let counted = format!("dosegate_{version}+");
        let mut removed = Vec::new();
        for name in self.entries()? {
            if name == plain
                || (name.starts_with(&counted)
                    && Path::new(&name).extension().is_some_and(|e| e == "efi"))
            {
                let path = self.dir.join(&name);
                std::fs::remove_file(&path)
                    .map_err(io_err(format!("remove {}", path.display())))?;
                removed.push(name);
            }
        }
        self.sync_dir()?;
        Ok(removed)
    }

    /// Starts a new entry in a temporary file the boot loader ignores.
    pub fn begin(&self) -> Result<PendingEntry, DiskError> {
        let tmp = self.dir.join(TMP_ENTRY);
        let file = File::create(&tmp).map_err(io_err(format!("create {}", tmp.display())))?;
        Ok(PendingEntry { file, tmp })
    }

    /// Publishes a written entry as `name`: fsync, rename, fsync of the folder.
    pub fn publish(&self, entry: &PendingEntry, name: &str) -> Result<PathBuf, DiskError> {
        entry
            .file
            .sync_all()
            .map_err(io_err(format!("fsync {}", entry.tmp.display())))?;
        let dest = self.dir.join(name);
        std::fs::rename(&entry.tmp, &dest)
            .map_err(io_err(format!("rename to {}", dest.display())))?;
        self.sync_dir()?;
        Ok(dest)
    }

    /// Drops an unfinished entry.
    pub fn discard(&self, entry: PendingEntry) {
        drop(entry.file);
        let _ = std::fs::remove_file(&entry.tmp);
    }

    fn sync_dir(&self) -> Result<(), DiskError> {
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io_err(format!("fsync {}", self.dir.display())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_root_hash_from_the_kernel_command_line() {
        let dir = tempfile::tempdir().expect("dir");
        let f = dir.path().join("cmdline");
        let rh = "ab".repeat(32);
        std::fs::write(&f, format!("ro roothash={rh} quiet\n")).expect("w");
        assert_eq!(running_roothash(&f).expect("hash"), [0xab; 32]);
        std::fs::write(&f, "ro roothash=abc quiet").expect("w");
        assert!(matches!(
            running_roothash(&f),
            Err(DiskError::NoRootHash { .. })
        ));
    }

    #[test]
    fn entries_are_published_atomically_and_versions_removed() {
        let dir = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(dir.path().join(ENTRY_DIR)).expect("mkdir");
        let esp = Esp::at(dir.path()).expect("esp");
        for old in [
            "dosegate_0.1.0+3.efi",
            "dosegate_0.1.0.1+0-1.efi",
            "dosegate_0.1.0.10.efi",
        ] {
            std::fs::write(esp.dir().join(old), b"x").expect("w");
        }
        let mut e = esp.begin().expect("begin");
        e.write(b"uki").expect("write");
        assert!(esp.entries().expect("ls").contains(&TMP_ENTRY.to_owned()));
        esp.publish(&e, "dosegate_0.1.0.2+3.efi").expect("publish");
        assert_eq!(
            esp.remove_version("0.1.0.1").expect("rm"),
            ["dosegate_0.1.0.1+0-1.efi"]
        );
        assert_eq!(
            esp.entries().expect("ls"),
            [
                "dosegate_0.1.0+3.efi",
                "dosegate_0.1.0.10.efi",
                "dosegate_0.1.0.2+3.efi"
            ]
        );
        assert_eq!(
            std::fs::read(esp.dir().join("dosegate_0.1.0.2+3.efi")).expect("r"),
            b"uki"
        );
        let e = esp.begin().expect("begin");
        esp.discard(e);
        assert!(!esp.entries().expect("ls").contains(&TMP_ENTRY.to_owned()));
    }
}

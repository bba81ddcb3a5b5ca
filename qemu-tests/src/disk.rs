//! A scratch copy of the image's disk, and the edits the scenarios make to it: replace a file on
//! the ESP (mtools, no mounts), overwrite bytes of a partition, install an update bundle with the
//! gateway's own installer (`dosegate update`, offline).
//!
//! It never touches the build's disk: [`ScratchDisk::copy_of`] makes a sparse copy in a private
//! folder that is removed on drop.

use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

use crate::HarnessError;
use crate::artifacts::Artifacts;

const SECTOR: u64 = 512;

/// A private working folder, removed on drop.
#[derive(Debug)]
pub struct WorkDir(PathBuf);

impl WorkDir {
    /// Creates a fresh folder under the system's temporary directory.
    pub fn new(tag: &str) -> Result<Self, HarnessError> {
        static SEQ: AtomicU32 = AtomicU32::new(0);
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("dosegate-qemu-{tag}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path)
            .map_err(HarnessError::io(format!("create {}", path.display())))?;
        Ok(Self(path))
    }

    /// The folder.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for WorkDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs a host tool, turning a failure into an error with its stderr.
pub(crate) fn run(cmd: &mut Command) -> Result<String, HarnessError> {
    let tool = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .map_err(HarnessError::io(format!("run {tool}")))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(HarnessError::ToolFailed {
            tool,
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        })
    }
}

/// A copy of the image's disk that a scenario may change.
#[derive(Debug)]
pub struct ScratchDisk {
    dir: WorkDir,
    path: PathBuf,
    esp_offset: u64,
}

impl ScratchDisk {
    /// Copies the release's disk (sparse) into a private folder.
    pub fn copy_of(art: &Artifacts) -> Result<Self, HarnessError> {
        let dir = WorkDir::new("disk")?;
        let path = dir.path().join("disk.raw");
        run(Command::new("cp")
            .arg("--sparse=always")
            .arg(&art.disk)
            .arg(&path))?;
        Ok(Self {
            dir,
            path,
            esp_offset: art.partition_start(1)? * SECTOR,
        })
    }

    /// The disk file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn esp(&self) -> String {
        format!("{}@@{}", self.path.display(), self.esp_offset)
    }

    /// Writes `file` onto the ESP at `esp_path` (e.g. `::/EFI/Linux/x.efi`), replacing it.
    pub fn esp_put(&self, file: &Path, esp_path: &str) -> Result<(), HarnessError> {
        run(Command::new("mcopy")
            .env("MTOOLS_SKIP_CHECK", "1")
            .args(["-o", "-i", &self.esp()])
            .arg(file)
            .arg(esp_path))
        .map(drop)
    }

    /// The file names in an ESP folder.
    pub fn esp_list(&self, folder: &str) -> Result<Vec<String>, HarnessError> {
        let out = run(Command::new("mdir").env("MTOOLS_SKIP_CHECK", "1").args([
            "-b",
            "-i",
            &self.esp(),
            folder,
        ]))?;
        Ok(out
            .lines()
            .filter_map(|l| l.rsplit('/').next())
            .filter(|l| !l.is_empty())
            .map(str::to_owned)
            .collect())
    }

    /// Overwrites `bytes` at `offset` bytes into the partition starting at sector `start`.
    pub fn overwrite(&self, start: u64, offset: u64, bytes: &[u8]) -> Result<(), HarnessError> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .open(&self.path)
            .map_err(HarnessError::io("open scratch disk"))?;
        f.seek(SeekFrom::Start(start * SECTOR + offset))
            .and_then(|_| f.write_all(bytes))
            .and_then(|()| f.sync_all())
            .map_err(HarnessError::io("overwrite scratch disk"))
    }

    /// Installs an update bundle into the inactive slot with `tries` boot attempts, offline, with
    /// the gateway's own installer (`dosegate update --disk`), which verifies the bundle first:
    /// the boot entry is staged in a folder and then copied onto the ESP with mtools.
    pub fn install_update(
        &self,
        art: &Artifacts,
        bundle: &Path,
        key: &Path,
        tries: u8,
    ) -> Result<std::process::Output, HarnessError> {
        let stage = self.dir.path().join("esp-stage");
        let entries = stage.join("EFI/Linux");
        let _ = std::fs::remove_dir_all(&stage);
        std::fs::create_dir_all(&entries).map_err(HarnessError::io("stage ESP"))?;
        let cmdline = self.dir.path().join("cmdline");
        let roothash = art.layout.get("ROOTHASH").cloned().unwrap_or_default();
        std::fs::write(&cmdline, format!("roothash={roothash} ro\n"))
            .map_err(HarnessError::io("write cmdline"))?;
        let out = Command::new(&art.dosegate)
            .args(["update", "--json", "--tries", &tries.to_string()])
            .arg("--bundle")
            .arg(bundle)
            .arg("--key")
            .arg(key)
            .arg("--disk")
            .arg(&self.path)
            .arg("--esp")
            .arg(&stage)
            .arg("--cmdline")
            .arg(&cmdline)
            .arg("--os-release")
            .arg(art.dir.join("os-release"))
            .output()
            .map_err(HarnessError::io("run dosegate update"))?;
        if out.status.success() {
            for entry in std::fs::read_dir(&entries).map_err(HarnessError::io("list stage"))? {
                let entry = entry.map_err(HarnessError::io("list stage"))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                self.esp_put(&entry.path(), &format!("::/EFI/Linux/{name}"))?;
            }
        }
        Ok(out)
    }

    /// The scratch folder (for other per-scenario files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

//! Where `make image` left the image and what it predicted: the disk, the OVMF variables with our
//! keys, the PCR 11 prediction, the unsigned and foreign-signed UKIs (secure-boot fixtures), the
//! next releases' bundles (rollback and update fixtures) and the gateway binary.
//!
//! It only reads the build folder (`build/image/current`, or `DOSEGATE_IMAGE_DIR`); it builds
//! nothing.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::HarnessError;

/// The artifacts of one built release.
#[derive(Debug, Clone)]
pub struct Artifacts {
    /// The release folder, e.g. `build/image/0.1.0`.
    pub dir: PathBuf,
    /// The release's version (`IMAGE_VERSION`).
    pub version: String,
    /// The disk image.
    pub disk: PathBuf,
    /// OVMF variables with our PK/KEK/db enrolled and secure boot on.
    pub ovmf_vars: PathBuf,
    /// The UKI without a signature.
    pub uki_unsigned: PathBuf,
    /// The UKI signed with a key the firmware does not trust.
    pub uki_foreign: PathBuf,
    /// The predicted PCR 11 (sha256, lowercase hex) once the system is up.
    pub pcr11: String,
    /// Partition start sectors and the root hash (`layout.env`).
    pub layout: BTreeMap<String, String>,
    /// The gateway binary that went into the image (`dosegate update` installs bundles offline
    /// too).
    pub dosegate: PathBuf,
    /// The bundle key's public half and a foreign one (PEM).
    pub bundle_key: PathBuf,
    /// A P-256 key that did not sign the bundles.
    pub foreign_bundle_key: PathBuf,
    /// The bundle of the next release, whose service is masked so its health check fails.
    pub failing_update: PathBuf,
    /// The bundle of an ordinary newer release (`<version>.2`).
    pub good_update: PathBuf,
}

/// The repository's root folder.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn existing(path: PathBuf) -> Result<PathBuf, HarnessError> {
    if path.exists() {
        Ok(path)
    } else {
        Err(HarnessError::MissingArtifact { path })
    }
}

fn read(path: &Path) -> Result<String, HarnessError> {
    std::fs::read_to_string(path).map_err(|_| HarnessError::MissingArtifact {
        path: path.to_path_buf(),
    })
}

impl Artifacts {
    /// Finds the current build.
    pub fn locate() -> Result<Self, HarnessError> {
        let dir = std::env::var_os("DOSEGATE_IMAGE_DIR")
            .map_or_else(|| repo_root().join("build/image/current"), PathBuf::from);
        let dir = existing(dir)?;
        let os_release = read(&dir.join("os-release"))?;
        let version = os_release
            .lines()
            .find_map(|l| l.strip_prefix("IMAGE_VERSION="))
            .map(|v| v.trim_matches('"').to_owned())
            .ok_or_else(|| HarnessError::BadArtifact {
                path: dir.join("os-release"),
                reason: "no IMAGE_VERSION".into(),
            })?;
        let layout_path = dir.join("layout.env");
        let layout = read(&layout_path)?
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let pcr_path = dir.join("pcr11.json");
        let pcr11 = parse_pcr11(&read(&pcr_path)?).ok_or_else(|| HarnessError::BadArtifact {
            path: pcr_path.clone(),
            reason: "no sha256 PCR 11 value".into(),
        })?;
        let next = format!("{version}.1");
        let good = format!("{version}.2");
        let target = std::env::var_os("CARGO_TARGET_DIR")
            .map_or_else(|| repo_root().join("target"), PathBuf::from);
        Ok(Self {
            disk: existing(dir.join(format!("dosegate-{version}.raw")))?,
            ovmf_vars: existing(dir.join("../ovmf-vars.fd"))?,
            uki_unsigned: existing(dir.join("uki.unsigned.efi"))?,
            uki_foreign: existing(dir.join("uki.foreign.efi"))?,
            dosegate: existing(target.join("release/dosegate"))?,
            bundle_key: existing(dir.join("../keys/bundle.pub.pem"))?,
            foreign_bundle_key: existing(dir.join("../keys/foreign-bundle.pub.pem"))?,
            failing_update: existing(dir.join(format!("../{next}/dosegate-{next}.bundle")))?,
            good_update: existing(dir.join(format!("../{good}/dosegate-{good}.bundle")))?,
            dir,
            version,
            pcr11,
            layout,
        })
    }

    /// The start sector of partition `n` (1 = ESP, 2/3 = root/verity A, 4/5 = B, 6 = state).
    pub fn partition_start(&self, n: u8) -> Result<u64, HarnessError> {
        self.layout
            .get(&format!("PART{n}_START"))
            .and_then(|v| v.parse().ok())
            .ok_or_else(|| HarnessError::BadArtifact {
                path: self.dir.join("layout.env"),
                reason: format!("no PART{n}_START"),
            })
    }
}

/// Extracts the sha256 value from `systemd-measure calculate --json=short` output (an object or
/// array with `"hash"`), tolerant of field order.
pub fn parse_pcr11(json: &str) -> Option<String> {
    let at = json.find("\"hash\"")?;
    let rest = json.get(at + 6..)?;
    let start = rest.find('"')? + 1;
    let value = rest.get(start..)?;
    let end = value.find('"')?;
    let hex = value.get(..end)?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
        .then(|| hex.to_ascii_lowercase())
}

//! Signed A/B update bundles for the appliance image: what a bundle must contain, how its
//! manifest is checked, and where it goes on the disk.
//!
//! A bundle (built by `os-image/steps/30-release.sh`) is a tar of exactly five regular files, in
//! this order: `manifest.json`, `manifest.sig` (ECDSA P-256/SHA-256 over the manifest's bytes,
//! DER, made with the bundle key), `root.img` (squashfs), `root.verity` (its dm-verity hash
//! tree) and `uki.efi` (the signed unified kernel image). This module owns:
//!
//! - the manifest's schema and bounds ([`Manifest::parse`]) and its signature
//!   ([`verify_manifest`], which returns the proof type [`SignedManifest`]);
//! - anti-rollback ([`Version`] ordering: an update must be strictly newer than what runs);
//! - the streamed check of each file against the manifest ([`FileCheck`] → [`VerifiedFile`]);
//! - the slot choice on the disk's GPT ([`plan`] → [`UpdatePlan`]), with [`gpt`] for the table
//!   and [`tar`] for the archive headers.
//!
//! It does no I/O: the daemon (`dosegate update`) reads the bundle and the disk, feeds the bytes
//! here, and writes what the plan says. Every size is bounded before anything is read whole.

pub mod gpt;
pub mod tar;

use std::cmp::Ordering;
use std::fmt;

use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use gpt::{Guid, PartitionTable};

/// The only bundle format this gateway installs.
pub const BUNDLE_FORMAT: &str = "dosegate-bundle-1";
/// Largest accepted `manifest.json`, in bytes.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024;
/// Largest accepted `manifest.sig` (a DER ECDSA P-256 signature is at most 72 bytes).
pub const MAX_SIGNATURE_BYTES: u64 = 128;
/// Largest accepted root file system image.
pub const MAX_ROOT_BYTES: u64 = 2 << 30;
/// Largest accepted verity hash tree.
pub const MAX_VERITY_BYTES: u64 = 64 << 20;
/// Largest accepted unified kernel image.
pub const MAX_UKI_BYTES: u64 = 256 << 20;
/// Most components of a version (`0.1.0.1` has four).
pub const MAX_VERSION_PARTS: usize = 8;
/// Most boot attempts a new entry may be given (sd-boot's `+N` counter).
pub const MAX_TRIES: u8 = 9;
/// GPT type of a root partition (x86-64).
pub const ROOT_TYPE: Guid = Guid::from_text_bytes([
    0x4f, 0x68, 0xbc, 0xe3, 0xe8, 0xcd, 0x4d, 0xb1, 0x96, 0xe7, 0xfb, 0xca, 0xf9, 0x84, 0xb7, 0x09,
]);
/// GPT type of a root verity partition (x86-64).
pub const VERITY_TYPE: Guid = Guid::from_text_bytes([
    0x2c, 0x73, 0x57, 0xed, 0xeb, 0xd2, 0x46, 0xd9, 0xae, 0xc1, 0x23, 0xd4, 0x37, 0xec, 0x2b, 0xf5,
]);
/// The label of a slot that holds nothing bootable.
pub const EMPTY_LABEL: &str = "_empty";

/// Why a bundle or an update was refused. Every variant has a stable kebab-case code
/// ([`UpdateError::code`]) and carries its evidence.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UpdateError {
    /// The bundle key could not be parsed (PEM SubjectPublicKeyInfo, P-256).
    #[error("bundle key is not a P-256 public key (PEM SubjectPublicKeyInfo)")]
    BadKey,
    /// `manifest.json` is larger than [`MAX_MANIFEST_BYTES`].
    #[error("manifest is {len} bytes; at most {MAX_MANIFEST_BYTES}")]
    ManifestTooLarge {
        /// Its size.
        len: u64,
    },
    /// The signature does not verify with the bundle key (or is not a DER signature).
    #[error("manifest signature does not verify with the bundle key")]
    BadSignature,
    /// The manifest is not valid JSON of this schema (unknown fields included).
    #[error("manifest is not valid: {reason}")]
    ManifestSyntax {
        /// What the parser reported.
        reason: String,
    },
    /// The manifest names another format.
    #[error("bundle format {found:?}; this gateway installs {BUNDLE_FORMAT:?}")]
    UnknownFormat {
        /// The format named.
        found: String,
    },
    /// A version is not 1–8 dot-separated decimal numbers.
    #[error("version {value:?} is not 1–{MAX_VERSION_PARTS} dot-separated numbers")]
    BadVersion {
        /// The value.
        value: String,
    },
    /// A root hash or digest is not lowercase hex of the right length.
    #[error("{field} {value:?} is not {len} lowercase hex digits")]
    BadHex {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
        /// The expected number of hex digits.
        len: usize,
    },
    /// A file is larger than its bound.
    #[error("{file} is {size} bytes; at most {max}")]
    FileTooLarge {
        /// The file.
        file: &'static str,
        /// Its size (announced or streamed).
        size: u64,
        /// The bound.
        max: u64,
    },
    /// The tar archive is not the expected sequence of five regular files.
    #[error("bundle archive: {reason}")]
    Archive {
        /// What is wrong, with the entry it was found at.
        reason: String,
    },
    /// A file's size in the archive differs from the manifest's.
    #[error("{file}: {found} bytes in the bundle, the manifest says {expected}")]
    SizeMismatch {
        /// The file.
        file: &'static str,
        /// The manifest's size.
        expected: u64,
        /// The archive's size.
        found: u64,
    },
    /// A file's SHA-256 differs from the manifest's.
    #[error("{file}: sha256 {found}, the manifest says {expected}")]
    DigestMismatch {
        /// The file.
        file: &'static str,
        /// The manifest's digest.
        expected: String,
        /// The digest of the bytes read.
        found: String,
    },
    /// The bundle is not newer than the running release (anti-rollback).
    #[error("bundle version {bundle} is not newer than the running {running}")]
    NotNewer {
        /// The bundle's version.
        bundle: String,
        /// The running version.
        running: String,
    },
    /// The bundle carries the running root itself.
    #[error("bundle root hash {roothash} is the running root's")]
    SameRoot {
        /// The root hash.
        roothash: String,
    },
    /// The boot attempts are outside 1..=[`MAX_TRIES`].
    #[error("tries {tries} outside 1..={MAX_TRIES}")]
    BadTries {
        /// The value.
        tries: u8,
    },
    /// The partition table is not the A/B layout this image uses.
    #[error("disk layout: {reason}")]
    DiskLayout {
        /// What is wrong.
        reason: String,
    },
    /// No root partition carries the running root hash.
    #[error("no root partition has the running root hash's UUID {partuuid}")]
    RunningSlotUnknown {
        /// The UUID looked for.
        partuuid: String,
    },
    /// A file does not fit its partition.
    #[error("{file} is {size} bytes; partition {partition} holds {capacity}")]
    DoesNotFit {
        /// The file.
        file: &'static str,
        /// Its size.
        size: u64,
        /// The partition number (1-based).
        partition: u32,
        /// The partition's size in bytes.
        capacity: u64,
    },
}

impl UpdateError {
    /// The stable code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadKey => "bad-key",
            Self::ManifestTooLarge { .. } => "manifest-too-large",
            Self::BadSignature => "bad-signature",
            Self::ManifestSyntax { .. } => "manifest-syntax",
            Self::UnknownFormat { .. } => "unknown-format",
            Self::BadVersion { .. } => "bad-version",
            Self::BadHex { .. } => "bad-hex",
            Self::FileTooLarge { .. } => "file-too-large",
            Self::Archive { .. } => "archive",
            Self::SizeMismatch { .. } => "size-mismatch",
            Self::DigestMismatch { .. } => "digest-mismatch",
            Self::NotNewer { .. } => "not-newer",
            Self::SameRoot { .. } => "same-root",
            Self::BadTries { .. } => "bad-tries",
            Self::DiskLayout { .. } => "disk-layout",
            Self::RunningSlotUnknown { .. } => "running-slot-unknown",
            Self::DoesNotFit { .. } => "does-not-fit",
        }
    }
}

/// A release version: 1–8 dot-separated decimal numbers (`0.1.0`, `0.1.0.1`), compared number by
/// number, a missing number counting as below zero (`0.1.0 < 0.1.0.0 < 0.1.0.1`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Version(Vec<u32>);

impl Version {
    /// Parses a version; leading zeros and empty parts are refused, so a version has one
    /// spelling.
    pub fn parse(text: &str) -> Result<Self, UpdateError> {
        let bad = || UpdateError::BadVersion {
            value: text.chars().take(64).collect(),
        };
        let parts: Vec<&str> = text.split('.').collect();
        if parts.is_empty() || parts.len() > MAX_VERSION_PARTS {
            return Err(bad());
        }
        parts
            .iter()
            .map(|p| {
                let canonical = !p.is_empty()
                    && p.len() <= 9
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p.len() == 1 || !p.starts_with('0'));
                if canonical {
                    p.parse::<u32>().map_err(|_| bad())
                } else {
                    Err(bad())
                }
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Self)
    }
}

impl Ord for Version {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0)
    }
}

impl PartialOrd for Version {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for n in &self.0 {
            if !first {
                f.write_str(".")?;
            }
            first = false;
            write!(f, "{n}")?;
        }
        Ok(())
    }
}

/// The key update bundles are signed with (its public half, baked into the read-only root).
#[derive(Debug, Clone)]
pub struct BundleKey(VerifyingKey);

impl BundleKey {
    /// Parses a PEM `PUBLIC KEY` (SubjectPublicKeyInfo) holding a P-256 key, as
    /// `openssl x509 -pubkey -noout` prints it.
    pub fn from_pem(pem: &str) -> Result<Self, UpdateError> {
        VerifyingKey::from_public_key_pem(pem.trim())
            .map(Self)
            .map_err(|_| UpdateError::BadKey)
    }
}

/// The three payload files of a bundle, in archive order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BundleFile {
    /// `root.img`: the squashfs root.
    Root,
    /// `root.verity`: its dm-verity hash tree.
    Verity,
    /// `uki.efi`: the signed unified kernel image.
    Uki,
}

impl BundleFile {
    /// The payload files in the order the archive holds them.
    pub const ALL: [Self; 3] = [Self::Root, Self::Verity, Self::Uki];

    /// The file's name in the archive and the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Self::Root => "root.img",
            Self::Verity => "root.verity",
            Self::Uki => "uki.efi",
        }
    }

    /// The largest size accepted for this file.
    pub fn max_size(self) -> u64 {
        match self {
            Self::Root => MAX_ROOT_BYTES,
            Self::Verity => MAX_VERITY_BYTES,
            Self::Uki => MAX_UKI_BYTES,
        }
    }
}

/// A payload file's expected size and digest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileEntry {
    /// Size in bytes.
    pub size: u64,
    /// SHA-256 of the bytes.
    pub sha256: [u8; 32],
}

/// A parsed, bounded manifest (not yet trusted: see [`verify_manifest`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Manifest {
    /// The release's version.
    pub version: Version,
    /// The dm-verity root hash of `root.img` (SHA-256).
    pub roothash: [u8; 32],
    /// The predicted PCR 11 (sha256 bank) once the release is up.
    pub pcr11: [u8; 32],
    /// `root.img`.
    pub root: FileEntry,
    /// `root.verity`.
    pub verity: FileEntry,
    /// `uki.efi`.
    pub uki: FileEntry,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawManifest {
    format: String,
    version: String,
    roothash: String,
    pcr11: String,
    files: RawFiles,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFiles {
    #[serde(rename = "root.img")]
    root: RawFile,
    #[serde(rename = "root.verity")]
    verity: RawFile,
    #[serde(rename = "uki.efi")]
    uki: RawFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    sha256: String,
    size: u64,
}

fn hex32(field: &'static str, value: &str) -> Result<[u8; 32], UpdateError> {
    let bad = || UpdateError::BadHex {
        field,
        value: value.chars().take(80).collect(),
        len: 64,
    };
    if value.len() != 64
        || !value
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(bad());
    }
    let mut out = [0u8; 32];
    hex::decode_to_slice(value, &mut out).map_err(|_| bad())?;
    Ok(out)
}

impl Manifest {
    /// Parses `manifest.json`: bounded, unknown fields refused, every value checked.
    pub fn parse(bytes: &[u8]) -> Result<Self, UpdateError> {
        let len = bytes.len() as u64;
        if len > MAX_MANIFEST_BYTES {
            return Err(UpdateError::ManifestTooLarge { len });
        }
        let raw: RawManifest =
            serde_json::from_slice(bytes).map_err(|e| UpdateError::ManifestSyntax {
                reason: e.to_string(),
            })?;
        if raw.format != BUNDLE_FORMAT {
            return Err(UpdateError::UnknownFormat {
                found: raw.format.chars().take(64).collect(),
            });
        }
        let file = |which: BundleFile, raw: &RawFile| -> Result<FileEntry, UpdateError> {
            if raw.size > which.max_size() {
                return Err(UpdateError::FileTooLarge {
                    file: which.name(),
                    size: raw.size,
                    max: which.max_size(),
                });
            }
            Ok(FileEntry {
                size: raw.size,
                sha256: hex32("sha256", &raw.sha256)?,
            })
        };
        Ok(Self {
            version: Version::parse(&raw.version)?,
            roothash: hex32("roothash", &raw.roothash)?,
            pcr11: hex32("pcr11", &raw.pcr11)?,
            root: file(BundleFile::Root, &raw.files.root)?,
            verity: file(BundleFile::Verity, &raw.files.verity)?,
            uki: file(BundleFile::Uki, &raw.files.uki)?,
        })
    }

    /// The expected size and digest of a payload file.
    pub fn entry(&self, file: BundleFile) -> FileEntry {
        match file {
            BundleFile::Root => self.root,
            BundleFile::Verity => self.verity,
            BundleFile::Uki => self.uki,
        }
    }
}

/// A manifest whose signature verified with the bundle key. Only [`verify_manifest`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedManifest(Manifest);

impl SignedManifest {
    /// The verified manifest.
    pub fn manifest(&self) -> &Manifest {
        &self.0
    }
}

/// Checks `signature` (DER ECDSA P-256 over SHA-256 of `manifest`, as `openssl dgst -sha256
/// -sign` makes it) with `key`, then parses the manifest. The signature is checked first, so an
/// unsigned manifest never reaches the parser's deeper checks.
pub fn verify_manifest(
    manifest: &[u8],
    signature: &[u8],
    key: &BundleKey,
) -> Result<SignedManifest, UpdateError> {
    let len = manifest.len() as u64;
    if len > MAX_MANIFEST_BYTES {
        return Err(UpdateError::ManifestTooLarge { len });
    }
    if signature.len() as u64 > MAX_SIGNATURE_BYTES {
        return Err(UpdateError::BadSignature);
    }
    let sig = Signature::from_der(signature).map_err(|_| UpdateError::BadSignature)?;
    // OpenSSL does not normalise s; both forms of one signature are accepted (no replay concern:
    // the manifest, not the signature, is what the gateway acts on).
    let sig = sig.normalize_s().unwrap_or(sig);
    let digest: [u8; 32] = Sha256::digest(manifest).into();
    key.0
        .verify_prehash(&digest, &sig)
        .map_err(|_| UpdateError::BadSignature)?;
    Manifest::parse(manifest).map(SignedManifest)
}

/// Anti-rollback: the bundle must be strictly newer than the running release.
pub fn check_newer(signed: &SignedManifest, running: &Version) -> Result<(), UpdateError> {
    let bundle = &signed.0.version;
    if bundle > running {
        Ok(())
    } else {
        Err(UpdateError::NotNewer {
            bundle: bundle.to_string(),
            running: running.to_string(),
        })
    }
}

/// Streams one payload file against the manifest: feed every chunk read from the archive, then
/// [`FileCheck::finish`]. It refuses more bytes than announced as soon as they arrive.
#[derive(Debug, Clone)]
pub struct FileCheck {
    file: BundleFile,
    expected: FileEntry,
    seen: u64,
    hasher: Sha256,
}

impl FileCheck {
    /// Starts checking `file` whose archive entry announces `archive_size` bytes.
    pub fn new(
        signed: &SignedManifest,
        file: BundleFile,
        archive_size: u64,
    ) -> Result<Self, UpdateError> {
        let expected = signed.0.entry(file);
        if archive_size != expected.size {
            return Err(UpdateError::SizeMismatch {
                file: file.name(),
                expected: expected.size,
                found: archive_size,
            });
        }
        Ok(Self {
            file,
            expected,
            seen: 0,
            hasher: Sha256::new(),
        })
    }

    /// Feeds the next chunk.
    pub fn update(&mut self, chunk: &[u8]) -> Result<(), UpdateError> {
        let seen = self.seen.saturating_add(chunk.len() as u64);
        if seen > self.expected.size {
            return Err(UpdateError::SizeMismatch {
                file: self.file.name(),
                expected: self.expected.size,
                found: seen,
            });
        }
        self.seen = seen;
        self.hasher.update(chunk);
        Ok(())
    }

    /// Bytes fed so far.
    pub fn seen(&self) -> u64 {
        self.seen
    }

    /// Ends the file: every byte seen and the digest equal to the manifest's.
    pub fn finish(self) -> Result<VerifiedFile, UpdateError> {
        if self.seen != self.expected.size {
            return Err(UpdateError::SizeMismatch {
                file: self.file.name(),
                expected: self.expected.size,
                found: self.seen,
            });
        }
        let found: [u8; 32] = self.hasher.finalize().into();
        if found != self.expected.sha256 {
            return Err(UpdateError::DigestMismatch {
                file: self.file.name(),
                expected: hex::encode(self.expected.sha256),
                found: hex::encode(found),
            });
        }
        Ok(VerifiedFile {
            file: self.file,
            size: self.seen,
        })
    }
}

/// A payload file whose every byte matched the signed manifest. Only [`FileCheck::finish`] makes
/// one; [`UpdatePlan::commit`] needs all three.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VerifiedFile {
    file: BundleFile,
    size: u64,
}

impl VerifiedFile {
    /// Which file.
    pub fn file(&self) -> BundleFile {
        self.file
    }

    /// Its size.
    pub fn size(&self) -> u64 {
        self.size
    }
}

/// One A/B slot: a root partition and its verity partition (1-based partition numbers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Slot {
    /// `A` or `B` (the order of the root partitions in the table).
    pub name: char,
    /// The root partition's number.
    pub root: u32,
    /// The verity partition's number.
    pub verity: u32,
    /// The version in the slot's label (`dosegate_<version>`), if any.
    pub version: Option<String>,
}

/// Where and how a verified bundle is installed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpdatePlan {
    /// The running slot (left alone).
    pub running: Slot,
    /// The slot written.
    pub target: Slot,
    /// Byte offset and capacity of the target root partition.
    pub root_extent: (u64, u64),
    /// Byte offset and capacity of the target verity partition.
    pub verity_extent: (u64, u64),
    /// The release installed.
    pub version: Version,
    /// Its root hash.
    pub roothash: [u8; 32],
    /// The boot entry's file name in `EFI/Linux` (`dosegate_<version>+<tries>.efi`).
    pub entry_name: String,
    /// Labels the target partitions get (root, verity).
    pub labels: (String, String),
    /// UUIDs the target partitions get: the halves of the root hash, as systemd's verity
    /// discovery expects.
    pub uuids: (Guid, Guid),
    /// The version whose boot entries must leave the ESP first (it was in the target slot).
    pub replaced: Option<String>,
}

/// The GUID systemd looks for: 16 bytes of the root hash, read as a GUID's text form.
pub fn partuuid_of(half: &[u8; 16]) -> Guid {
    Guid::from_text_bytes(*half)
}

fn halves(roothash: &[u8; 32]) -> ([u8; 16], [u8; 16]) {
    let mut a = [0u8; 16];
    let mut b = [0u8; 16];
    for (i, byte) in roothash.iter().enumerate() {
        if let Some(slot) = a.get_mut(i) {
            *slot = *byte;
        } else if let Some(slot) = b.get_mut(i - 16) {
            *slot = *byte;
        }
    }
    (a, b)
}

/// The slots of an A/B disk: the n-th root partition pairs with the n-th verity partition;
/// exactly two of each.
pub fn slots(table: &PartitionTable) -> Result<[Slot; 2], UpdateError> {
    let roots: Vec<u32> = table
        .partitions()
        .iter()
        .filter(|p| p.type_guid == ROOT_TYPE)
        .map(|p| p.number)
        .collect();
    let verities: Vec<u32> = table
        .partitions()
        .iter()
        .filter(|p| p.type_guid == VERITY_TYPE)
        .map(|p| p.number)
        .collect();
    let (&[ra, rb], &[va, vb]) = (roots.as_slice(), verities.as_slice()) else {
        return Err(UpdateError::DiskLayout {
            reason: format!(
                "{} root and {} verity partitions; the A/B layout has 2 of each",
                roots.len(),
                verities.len()
            ),
        });
    };
    let version = |n: u32| {
        table
            .partition(n)
            .and_then(|p| p.name.strip_prefix("dosegate_").map(str::to_owned))
    };
    Ok([
        Slot {
            name: 'A',
            root: ra,
            verity: va,
            version: version(ra),
        },
        Slot {
            name: 'B',
            root: rb,
            verity: vb,
            version: version(rb),
        },
    ])
}

/// Chooses the inactive slot for a verified bundle: the slot whose root partition does not carry
/// the running root hash. Checks anti-rollback, the tries, that the bundle is not the running
/// root and that both files fit.
pub fn plan(
    signed: &SignedManifest,
    table: &PartitionTable,
    running_roothash: &[u8; 32],
    running_version: &Version,
    tries: u8,
) -> Result<UpdatePlan, UpdateError> {
    let m = &signed.0;
    if !(1..=MAX_TRIES).contains(&tries) {
        return Err(UpdateError::BadTries { tries });
    }
    check_newer(signed, running_version)?;
    if &m.roothash == running_roothash {
        return Err(UpdateError::SameRoot {
            roothash: hex::encode(m.roothash),
        });
    }
    let [a, b] = slots(table)?;
    let (running_half, _) = halves(running_roothash);
    let running_uuid = partuuid_of(&running_half);
    let uuid_of = |n: u32| table.partition(n).map(|p| p.uuid);
    let (running, target) = if uuid_of(a.root) == Some(running_uuid) {
        (a, b)
    } else if uuid_of(b.root) == Some(running_uuid) {
        (b, a)
    } else {
        return Err(UpdateError::RunningSlotUnknown {
            partuuid: running_uuid.to_string(),
        });
    };
    let extent = |n: u32, file: BundleFile, size: u64| -> Result<(u64, u64), UpdateError> {
        let p = table.partition(n).ok_or_else(|| UpdateError::DiskLayout {
            reason: format!("partition {n} vanished"),
        })?;
        let (offset, capacity) = p.byte_extent(table.sector_size());
        if size > capacity {
            return Err(UpdateError::DoesNotFit {
                file: file.name(),
                size,
                partition: n,
                capacity,
            });
        }
        Ok((offset, capacity))
    };
    let root_extent = extent(target.root, BundleFile::Root, m.root.size)?;
    let verity_extent = extent(target.verity, BundleFile::Verity, m.verity.size)?;
    let (h1, h2) = halves(&m.roothash);
    let version = m.version.to_string();
    Ok(UpdatePlan {
        replaced: target.version.clone(),
        running,
        target,
        root_extent,
        verity_extent,
        entry_name: format!("dosegate_{version}+{tries}.efi"),
        labels: (
            format!("dosegate_{version}"),
            format!("dosegate_{version}_verity"),
        ),
        uuids: (partuuid_of(&h1), partuuid_of(&h2)),
        version: m.version.clone(),
        roothash: m.roothash,
    })
}

/// The partition UUID a slot gets while it is being written: derived from the partition number,
/// never a root hash half, so no boot entry can find a half-written slot.
pub fn empty_uuid(partition: u32) -> Guid {
    let digest = Sha256::digest(format!("dosegate-empty-slot-{partition}").as_bytes());
    let mut bytes = [0u8; 16];
    for (b, d) in bytes.iter_mut().zip(digest.iter()) {
        *b = *d;
    }
    // RFC 4122 version 4 / variant bits, so it reads as an ordinary random UUID.
    if let Some(b) = bytes.get_mut(6) {
        *b = (*b & 0x0f) | 0x40;
    }
    if let Some(b) = bytes.get_mut(8) {
        *b = (*b & 0x3f) | 0x80;
    }
    Guid::from_text_bytes(bytes)
}

/// Proof that a bundle was written in full and every file matched: what the last step, renaming
/// the slot and publishing the boot entry, requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPayload {
    plan: UpdatePlan,
}

impl UpdatePlan {
    /// Joins the plan with the three verified files; refuses unless each file is there once.
    pub fn commit(self, files: &[VerifiedFile]) -> Result<VerifiedPayload, UpdateError> {
        for want in BundleFile::ALL {
            if files.iter().filter(|f| f.file == want).count() != 1 {
                return Err(UpdateError::Archive {
                    reason: format!("{} not verified exactly once", want.name()),
                });
            }
        }
        Ok(VerifiedPayload { plan: self })
    }
}

impl VerifiedPayload {
    /// The plan being completed.
    pub fn plan(&self) -> &UpdatePlan {
        &self.plan
    }
}

#[cfg(test)]
mod tests;

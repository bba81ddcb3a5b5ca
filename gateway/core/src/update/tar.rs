//! The bundle's tar archive, one 512-byte header at a time: a bundle is exactly the five regular
//! files `manifest.json`, `manifest.sig`, `root.img`, `root.verity`, `uki.efi`, in this order,
//! then the end-of-archive zero block.
//!
//! Anything else is refused before its data is read: other names (paths, `..`, absolute names,
//! duplicates), links, devices, directories, GNU long names and PAX headers, a bad header
//! checksum, a size beyond the file's bound. No I/O: [`BundleArchive`] is fed header blocks and
//! says which file comes and how many bytes (plus padding) to read next.

use super::{BundleFile, MAX_MANIFEST_BYTES, MAX_SIGNATURE_BYTES, UpdateError};

/// Size of a tar block.
pub const BLOCK: usize = 512;

/// An entry of the bundle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Member {
    /// `manifest.json`.
    Manifest,
    /// `manifest.sig`.
    Signature,
    /// A payload file.
    Payload(BundleFile),
}

impl Member {
    /// The members in archive order.
    pub const ORDER: [Self; 5] = [
        Self::Manifest,
        Self::Signature,
        Self::Payload(BundleFile::Root),
        Self::Payload(BundleFile::Verity),
        Self::Payload(BundleFile::Uki),
    ];

    /// The member's file name.
    pub fn name(self) -> &'static str {
        match self {
            Self::Manifest => "manifest.json",
            Self::Signature => "manifest.sig",
            Self::Payload(f) => f.name(),
        }
    }

    fn max_size(self) -> u64 {
        match self {
            Self::Manifest => MAX_MANIFEST_BYTES,
            Self::Signature => MAX_SIGNATURE_BYTES,
            Self::Payload(f) => f.max_size(),
        }
    }
}

/// What the next header announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// A member follows: `size` bytes of data, then `padding` bytes up to the block boundary.
    Entry {
        /// Which member.
        member: Member,
        /// Its data size.
        size: u64,
        /// Zero padding after the data.
        padding: u64,
    },
    /// The end-of-archive block: all five members were seen.
    End,
}

/// The reader's position in the bundle.
#[derive(Debug, Clone, Default)]
pub struct BundleArchive {
    seen: usize,
}

fn archive(reason: impl Into<String>) -> UpdateError {
    UpdateError::Archive {
        reason: reason.into(),
    }
}

/// Parses an octal tar number field (NUL/space terminated; base-256 is refused).
fn octal(field: &[u8], what: &str) -> Result<u64, UpdateError> {
    let digits: Vec<u8> = field
        .iter()
        .copied()
        .skip_while(|&b| b == b' ')
        .take_while(|&b| b != 0 && b != b' ')
        .collect();
    if digits.is_empty() || digits.len() > 12 || !digits.iter().all(|b| (b'0'..=b'7').contains(b)) {
        return Err(archive(format!("{what} field is not an octal number")));
    }
    Ok(digits
        .iter()
        .fold(0u64, |acc, &d| (acc << 3) | u64::from(d - b'0')))
}

impl BundleArchive {
    /// A reader at the start of the archive.
    pub fn new() -> Self {
        Self::default()
    }

    /// Reads the next header block.
    pub fn next_header(&mut self, block: &[u8; BLOCK]) -> Result<Next, UpdateError> {
        let Some(&expected) = Member::ORDER.get(self.seen) else {
            if block.iter().all(|&b| b == 0) {
                return Ok(Next::End);
            }
            return Err(archive("more than the five bundle files"));
        };
        if block.iter().all(|&b| b == 0) {
            return Err(archive(format!(
                "archive ends before {} (a bundle holds five files)",
                expected.name()
            )));
        }
        let field = |r: std::ops::Range<usize>| block.get(r).unwrap_or_default();
        let stored = octal(field(148..156), "checksum")?;
        let sum: u64 = block
            .iter()
            .enumerate()
            .map(|(i, &b)| {
                if (148..156).contains(&i) {
                    32
                } else {
                    u64::from(b)
                }
            })
            .sum();
        if sum != stored {
            return Err(archive(format!(
                "header checksum {stored} != computed {sum} (before {})",
                expected.name()
            )));
        }
        let magic = field(257..265);
        if magic != b"ustar\x0000" && magic != b"ustar  \x00" {
            return Err(archive("not a ustar/GNU tar header"));
        }
        let name_field = field(0..100);
        let name_len = name_field.iter().position(|&b| b == 0).unwrap_or(100);
        let name = name_field.get(..name_len).unwrap_or_default();
        let prefix = field(345..500);
        let typeflag = block.get(156).copied().unwrap_or(0);
        if !matches!(typeflag, b'0' | 0) {
            return Err(archive(format!(
                "entry {:?} has type {:?}; only regular files are allowed",
                String::from_utf8_lossy(name),
                char::from(typeflag)
            )));
        }
        if prefix.first().copied().unwrap_or(0) != 0 || name != expected.name().as_bytes() {
            return Err(archive(format!(
                "entry {:?} where {} was expected (names are exact; no paths)",
                String::from_utf8_lossy(name),
                expected.name()
            )));
        }
        let size = octal(field(124..136), "size")?;
        if size > expected.max_size() {
            return Err(UpdateError::FileTooLarge {
                file: expected.name(),
                size,
                max: expected.max_size(),
            });
        }
        self.seen += 1;
        let padding = (BLOCK as u64 - size % BLOCK as u64) % BLOCK as u64;
        Ok(Next::Entry {
            member: expected,
            size,
            padding,
        })
    }
}

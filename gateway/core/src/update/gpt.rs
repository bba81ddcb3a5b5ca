//! The GUID partition table of the appliance disk, from bytes: headers and entries checked
//! (signatures, sizes, CRC32s), partitions listed, and an edited table encoded back (a new
//! partition UUID and label), primary and backup, with their CRCs.
//!
//! No I/O: the daemon reads the header sector (LBA 1), the entry array and the backup header and
//! writes back the byte ranges [`PartitionTable::encode`] returns, in that order (backup first,
//! so an interrupted write leaves one consistent copy).

use std::fmt;

use super::UpdateError;

/// GPT header signature.
const SIGNATURE: &[u8; 8] = b"EFI PART";
/// Size of the header fields (revision 1.0).
const HEADER_SIZE: usize = 92;
/// Size of one partition entry this reader accepts.
const ENTRY_SIZE: usize = 128;
/// Most entries read (the usual 128, with room).
const MAX_ENTRIES: u32 = 256;
/// Longest partition label, in UTF-16 code units.
pub const MAX_LABEL_LEN: usize = 36;

/// A GUID, held in the byte order of its text form (`4f68bce3-e8cd-…` → `4f 68 bc e3 e8 cd …`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Guid([u8; 16]);

impl Guid {
    /// From the 16 bytes of the text form, in order.
    pub const fn from_text_bytes(bytes: [u8; 16]) -> Self {
        Self(bytes)
    }

    /// The bytes of the text form.
    pub fn text_bytes(&self) -> [u8; 16] {
        self.0
    }

    /// From GPT's on-disk layout (first three fields little-endian).
    pub fn from_disk(d: [u8; 16]) -> Self {
        let [a0, a1, a2, a3, b0, b1, c0, c1, rest @ ..] = d;
        let mut t = [0u8; 16];
        let head = [a3, a2, a1, a0, b1, b0, c1, c0];
        for (dst, src) in t.iter_mut().zip(head.iter().chain(rest.iter())) {
            *dst = *src;
        }
        Self(t)
    }

    /// GPT's on-disk layout.
    pub fn to_disk(self) -> [u8; 16] {
        // The byte swap is its own inverse.
        Self::from_disk(self.0).0
    }
}

impl fmt::Display for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let h = hex::encode(self.0);
        let part = |r: std::ops::Range<usize>| h.get(r).unwrap_or_default();
        write!(
            f,
            "{}-{}-{}-{}-{}",
            part(0..8),
            part(8..12),
            part(12..16),
            part(16..20),
            part(20..32)
        )
    }
}

impl fmt::Debug for Guid {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Guid({self})")
    }
}

fn layout(reason: impl Into<String>) -> UpdateError {
    UpdateError::DiskLayout {
        reason: reason.into(),
    }
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    if let Some(s) = b.get(at..at + 4) {
        w.copy_from_slice(s);
    }
    u32::from_le_bytes(w)
}

fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = b.get(at..at + 8) {
        w.copy_from_slice(s);
    }
    u64::from_le_bytes(w)
}

fn put(buf: &mut [u8], at: usize, bytes: &[u8]) {
    if let Some(dst) = buf.get_mut(at..at + bytes.len()) {
        dst.copy_from_slice(bytes);
    }
}

/// CRC-32 (IEEE 802.3, reflected, as GPT uses).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= u32::from(b);
        for _ in 0..8 {
            let mask = (crc & 1).wrapping_neg();
            crc = (crc >> 1) ^ (0xEDB8_8320 & mask);
        }
    }
    !crc
}

/// A checked GPT header (primary or backup).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    raw: [u8; HEADER_SIZE],
    /// The LBA this header sits at.
    pub my_lba: u64,
    /// The LBA of the other copy.
    pub alternate_lba: u64,
    /// First LBA partitions may use.
    pub first_usable: u64,
    /// Last LBA partitions may use.
    pub last_usable: u64,
    /// Where this copy's entry array starts.
    pub entries_lba: u64,
    /// Number of entries.
    pub num_entries: u32,
    /// CRC32 of the entry array.
    pub entries_crc: u32,
}

impl Header {
    /// Parses and checks a header sector: signature, header size, CRC, entry size and count.
    pub fn parse(sector: &[u8]) -> Result<Self, UpdateError> {
        let raw_slice = sector
            .get(..HEADER_SIZE)
            .ok_or_else(|| layout("GPT header sector too short"))?;
        if raw_slice.get(..8) != Some(SIGNATURE.as_slice()) {
            return Err(layout(
                "no GPT signature (not a GPT disk, or not 512-byte sectors)",
            ));
        }
        let mut raw = [0u8; HEADER_SIZE];
        raw.copy_from_slice(raw_slice);
        if le_u32(&raw, 12) as usize != HEADER_SIZE {
            return Err(layout(format!(
                "GPT header size {} (this reader knows {HEADER_SIZE})",
                le_u32(&raw, 12)
            )));
        }
        let stored = le_u32(&raw, 16);
        let mut zeroed = raw;
        put(&mut zeroed, 16, &[0; 4]);
        if crc32(&zeroed) != stored {
            return Err(layout("GPT header CRC mismatch"));
        }
        let num_entries = le_u32(&raw, 80);
        if le_u32(&raw, 84) as usize != ENTRY_SIZE || num_entries == 0 || num_entries > MAX_ENTRIES
        {
            return Err(layout(format!(
                "GPT has {num_entries} entries of {} bytes (accepted: 1..={MAX_ENTRIES} of {ENTRY_SIZE})",
                le_u32(&raw, 84)
            )));
        }
        Ok(Self {
            my_lba: le_u64(&raw, 24),
            alternate_lba: le_u64(&raw, 32),
            first_usable: le_u64(&raw, 40),
            last_usable: le_u64(&raw, 48),
            entries_lba: le_u64(&raw, 72),
            num_entries,
            entries_crc: le_u32(&raw, 88),
            raw,
        })
    }

    /// Length of the entry array in bytes (bounded by the entry count limit).
    pub fn entries_len(&self) -> usize {
        self.num_entries as usize * ENTRY_SIZE
    }

    fn encode(&self, entries_crc: u32) -> Vec<u8> {
        let mut raw = self.raw;
        put(&mut raw, 88, &entries_crc.to_le_bytes());
        put(&mut raw, 16, &[0; 4]);
        let crc = crc32(&raw);
        put(&mut raw, 16, &crc.to_le_bytes());
        raw.to_vec()
    }
}

/// One used partition entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partition {
    /// 1-based partition number (entry index + 1).
    pub number: u32,
    /// Partition type.
    pub type_guid: Guid,
    /// Unique partition GUID (the PARTUUID).
    pub uuid: Guid,
    /// First LBA.
    pub first_lba: u64,
    /// Last LBA (inclusive).
    pub last_lba: u64,
    /// The label (UTF-16, up to 36 units; lossily decoded).
    pub name: String,
}

impl Partition {
    /// Byte offset and size, for `sector_size`-byte sectors.
    pub fn byte_extent(&self, sector_size: u64) -> (u64, u64) {
        let sectors = self
            .last_lba
            .saturating_sub(self.first_lba)
            .saturating_add(1);
        (
            self.first_lba.saturating_mul(sector_size),
            sectors.saturating_mul(sector_size),
        )
    }
}

/// A checked partition table: primary header, its entry array, and the backup header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionTable {
    primary: Header,
    backup: Header,
    entries: Vec<u8>,
    partitions: Vec<Partition>,
    sector_size: u64,
}

/// A byte range to write to the disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskWrite {
    /// Offset in bytes.
    pub offset: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
}

impl PartitionTable {
    /// Checks the entry array against the primary header (size, CRC) and the backup header
    /// against the primary (they must point at each other), then lists used partitions.
    pub fn new(
        primary: Header,
        entries: &[u8],
        backup: Header,
        sector_size: u64,
    ) -> Result<Self, UpdateError> {
        if entries.len() != primary.entries_len() {
            return Err(layout(format!(
                "GPT entry array is {} bytes; the header says {}",
                entries.len(),
                primary.entries_len()
            )));
        }
        if crc32(entries) != primary.entries_crc {
            return Err(layout("GPT entry array CRC mismatch"));
        }
        if primary.my_lba != 1
            || backup.my_lba != primary.alternate_lba
            || backup.alternate_lba != primary.my_lba
            || backup.num_entries != primary.num_entries
        {
            return Err(layout(
                "primary and backup GPT headers do not describe each other",
            ));
        }
        let mut partitions = Vec::new();
        for (index, e) in entries.chunks_exact(ENTRY_SIZE).enumerate() {
            let mut t = [0u8; 16];
            t.copy_from_slice(e.get(0..16).unwrap_or(&[0; 16]));
            if t == [0; 16] {
                continue;
            }
            let mut u = [0u8; 16];
            u.copy_from_slice(e.get(16..32).unwrap_or(&[0; 16]));
            let first_lba = le_u64(e, 32);
            let last_lba = le_u64(e, 40);
            if first_lba > last_lba
                || first_lba < primary.first_usable
                || last_lba > primary.last_usable
            {
                return Err(layout(format!(
                    "partition {} spans LBA {first_lba}..={last_lba}, outside {}..={}",
                    index + 1,
                    primary.first_usable,
                    primary.last_usable
                )));
            }
            let units: Vec<u16> = e
                .get(56..128)
                .unwrap_or_default()
                .chunks_exact(2)
                .map(|c| {
                    u16::from_le_bytes([
                        c.first().copied().unwrap_or(0),
                        c.get(1).copied().unwrap_or(0),
                    ])
                })
                .take_while(|&c| c != 0)
                .collect();
            partitions.push(Partition {
                number: u32::try_from(index + 1).unwrap_or(u32::MAX),
                type_guid: Guid::from_disk(t),
                uuid: Guid::from_disk(u),
                first_lba,
                last_lba,
                name: String::from_utf16_lossy(&units),
            });
        }
        Ok(Self {
            primary,
            backup,
            entries: entries.to_vec(),
            partitions,
            sector_size,
        })
    }

    /// The used partitions, by number.
    pub fn partitions(&self) -> &[Partition] {
        &self.partitions
    }

    /// Partition `number` (1-based), if used.
    pub fn partition(&self, number: u32) -> Option<&Partition> {
        self.partitions.iter().find(|p| p.number == number)
    }

    /// The sector size the table was read with.
    pub fn sector_size(&self) -> u64 {
        self.sector_size
    }

    /// The table with partition `number` given a new unique GUID and label (ASCII, ≤ 36).
    pub fn with_identity(&self, number: u32, uuid: Guid, label: &str) -> Result<Self, UpdateError> {
        if label.len() > MAX_LABEL_LEN || !label.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(layout(format!(
                "label {label:?} is not 1–36 printable ASCII"
            )));
        }
        if self.partition(number).is_none() {
            return Err(layout(format!("partition {number} is not in use")));
        }
        let at = (number as usize - 1) * ENTRY_SIZE;
        let mut entries = self.entries.clone();
        put(&mut entries, at + 16, &uuid.to_disk());
        let mut name = [0u8; 72];
        for (i, b) in label.bytes().enumerate() {
            put(&mut name, i * 2, &u16::from(b).to_le_bytes());
        }
        put(&mut entries, at + 56, &name);
        let crc = crc32(&entries);
        let primary = Header::parse(&self.primary.encode(crc))?;
        let backup = Header::parse(&self.backup.encode(crc))?;
        Self::new(primary, &entries, backup, self.sector_size)
    }

    /// The writes that put this table on the disk, in a safe order: backup entries, backup
    /// header, primary entries, primary header.
    pub fn encode(&self) -> Vec<DiskWrite> {
        let crc = crc32(&self.entries);
        let at = |lba: u64| lba.saturating_mul(self.sector_size);
        vec![
            DiskWrite {
                offset: at(self.backup.entries_lba),
                bytes: self.entries.clone(),
            },
            DiskWrite {
                offset: at(self.backup.my_lba),
                bytes: self.backup.encode(crc),
            },
            DiskWrite {
                offset: at(self.primary.entries_lba),
                bytes: self.entries.clone(),
            },
            DiskWrite {
                offset: at(self.primary.my_lba),
                bytes: self.primary.encode(crc),
            },
        ]
    }
}

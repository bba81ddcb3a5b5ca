//! On-disk framing of ledger records and the scan that finds a torn tail.
//!
//! A segment file is a sequence of frames `len: u32 big-endian ‖ record bytes`. An append writes
//! one frame and fsyncs; a crash or power loss can leave only a prefix of the last frame (or a
//! zero-filled tail, on file systems that extend the size before the data lands). [`scan`] walks
//! the frames and reports where the well-formed part ends: the store truncates a *torn tail*
//! there, but a bad frame followed by a good one is damage, never silently dropped. This module
//! only looks at bytes; the store does the file I/O.

use super::MAX_RECORD_LEN;
use super::record::Record;

/// Bytes of the length prefix.
pub const HEADER_LEN: usize = 4;

/// Frames `record` for appending.
pub fn encode(record: &[u8]) -> Vec<u8> {
    let len = u32::try_from(record.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(record.len() + HEADER_LEN);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(record);
    out
}

/// What a scan found after the last good frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// The bytes end exactly after the last good frame.
    Clean,
    /// From `offset` to the end, the bytes are a torn (incomplete or unreadable) last frame with
    /// no good frame after it: safe to truncate.
    Torn {
        /// Where the torn part starts.
        offset: usize,
    },
    /// The frame at `offset` is bad but a good frame follows: damage or tampering, not a tear.
    Damaged {
        /// Where the bad frame starts.
        offset: usize,
    },
}

/// The result of scanning a segment's bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan<'a> {
    /// The records of the good frames, in order.
    pub records: Vec<&'a [u8]>,
    /// Length of the good prefix.
    pub good_len: usize,
    /// What follows it.
    pub tail: Tail,
}

/// Reads the frame at `offset`: `Some((record, next_offset))` if complete and within the cap.
fn frame_at(bytes: &[u8], offset: usize) -> Option<(&[u8], usize)> {
    let header: [u8; HEADER_LEN] = bytes
        .get(offset..offset.checked_add(HEADER_LEN)?)?
        .try_into()
        .ok()?;
    let len = usize::try_from(u32::from_be_bytes(header)).ok()?;
    if len == 0 || len > MAX_RECORD_LEN {
        return None;
    }
    let start = offset + HEADER_LEN;
    let end = start.checked_add(len)?;
    Some((bytes.get(start..end)?, end))
}

/// Whether a good frame (complete, and decoding as a record) starts at `offset`.
fn good_frame_at(bytes: &[u8], offset: usize) -> Option<(&[u8], usize)> {
    let (record, next) = frame_at(bytes, offset)?;
    Record::decode(record).ok()?;
    Some((record, next))
}

/// Scans a segment. A frame is good when it is complete and decodes as a record (signatures and
/// chain are the verifier's business). If a bad frame is found, the rest of the bytes are searched
/// for any later good frame, at every offset, to tell damage from a torn tail.
pub fn scan(bytes: &[u8]) -> Scan<'_> {
    let mut records = Vec::new();
    let mut offset = 0;
    while offset < bytes.len() {
        let Some((record, next)) = good_frame_at(bytes, offset) else {
            let damaged = (offset + 1..bytes.len()).any(|o| good_frame_at(bytes, o).is_some());
            let tail = if damaged {
                Tail::Damaged { offset }
            } else {
                Tail::Torn { offset }
            };
            return Scan {
                records,
                good_len: offset,
                tail,
            };
        };
        records.push(record);
        offset = next;
    }
    Scan {
        records,
        good_len: offset,
        tail: Tail::Clean,
    }
}

//! Append-only ledger files: framing, fsync before an append returns, torn-tail recovery.
//!
//! A ledger directory holds segment files `ledger-NNNNNNNN.dgl`, each a sequence of frames
//! (`dosegate_core::ledger::frame`). [`Store::append`] writes one frame and calls `fdatasync`
//! before it returns, so an event only takes effect once it is on disk. When a segment reaches
//! its size cap the next one is created and the directory is fsync'd. [`Store::open`] recovers
//! after a crash: a torn last frame in the last segment (any prefix of a frame, or a zero-filled
//! tail) is truncated away and the truncation fsync'd; a bad frame followed by good ones, or a bad
//! frame in an earlier segment, is damage and the store refuses to open (fail closed).
//!
//! This module owns the files only. Record format, chain and signatures are the core's
//! (`dosegate_core::ledger`); signing is the `tpm` module's. [`read_dir`] gives a read-only view
//! for verification that never modifies the directory.

use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use dosegate_core::attest::EventLog;
use dosegate_core::cbor;
use dosegate_core::ledger::frame::{self, Tail};

/// Default size at which a new segment is started.
pub const DEFAULT_SEGMENT_BYTES: u64 = 64 * 1024 * 1024;
/// Largest segment file read (a cap on untrusted input; segments are cut well below it).
pub const MAX_SEGMENT_BYTES: u64 = 1024 * 1024 * 1024;
/// Most segment files in one ledger directory.
pub const MAX_SEGMENTS: usize = 100_000;

const PREFIX: &str = "ledger-";
const SUFFIX: &str = ".dgl";

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A file operation failed.
    #[error("{op} {}: {source}", path.display())]
    Io {
        /// What was being done.
        op: &'static str,
        /// On which path.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// A segment holds a bad frame with good frames after it, or a bad frame that is not at the
    /// end of the last segment: damage or tampering, never dropped silently.
    #[error("segment {} is damaged at byte {offset} (record {index})", path.display())]
    Damaged {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the bad frame.
        offset: usize,
        /// Index of the first record that cannot be read.
        index: u64,
    },
    /// Segment numbering has a gap (a deleted segment file).
    #[error("segment {expected} is missing (found {found})")]
    MissingSegment {
        /// The expected number.
        expected: u32,
        /// The number found instead.
        found: u32,
    },
    /// A segment is larger than [`MAX_SEGMENT_BYTES`], or there are too many.
    #[error("{} exceeds the cap of {max}", path.display())]
    TooLarge {
        /// The file or directory.
        path: PathBuf,
        /// The cap.
        max: u64,
    },
    /// The event-log file is not valid CBOR.
    #[error("event log {} is invalid: {source}", path.display())]
    EventLog {
        /// The file.
        path: PathBuf,
        /// The decoding error.
        #[source]
        source: dosegate_core::cbor::CborError,
    },
    /// A record is larger than a frame may hold.
    #[error("record of {len} bytes is too large to append")]
    RecordTooLarge {
        /// Its length.
        len: usize,
    },
}

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        op,
        path: path.to_owned(),
        source,
    }
}

/// How a frame is written. Whole frames in one `write` is the production mode; chunked writes
/// exist so that crash tests can kill the writer in the middle of a frame, as a power cut would.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WritePattern {
    /// One `write_all` per frame.
    Whole,
    /// Several `write` calls of at most this many bytes per frame.
    Chunked(usize),
}

/// What [`read_dir`] found.
#[derive(Debug, Default)]
pub struct Contents {
    /// Record bytes in order.
    pub records: Vec<Vec<u8>>,
    /// Whether the last segment ends in a torn frame (not yet recovered).
    pub torn_tail: bool,
    /// Number of segment files.
    pub segments: usize,
}

/// The segment files of `dir`, in order, checked for gaps.
fn segments(dir: &Path) -> Result<Vec<(u32, PathBuf)>, StoreError> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io("read directory", dir))? {
        let entry = entry.map_err(io("read directory", dir))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let Some(num) = name
            .strip_prefix(PREFIX)
            .and_then(|n| n.strip_suffix(SUFFIX))
            .and_then(|n| n.parse::<u32>().ok())
        else {
            continue;
        };
        found.push((num, entry.path()));
        if found.len() > MAX_SEGMENTS {
            return Err(StoreError::TooLarge {
                path: dir.to_owned(),
                max: MAX_SEGMENTS as u64,
            });
        }
    }
    found.sort();
    for (expected, (num, _)) in (0u32..).zip(&found) {
        if *num != expected {
            return Err(StoreError::MissingSegment {
                expected,
                found: *num,
            });
        }
    }
    Ok(found)
}

fn segment_path(dir: &Path, num: u32) -> PathBuf {
    dir.join(format!("{PREFIX}{num:08}{SUFFIX}"))
}

fn read_capped(path: &Path) -> Result<Vec<u8>, StoreError> {
    let len = fs::metadata(path).map_err(io("stat", path))?.len();
    if len > MAX_SEGMENT_BYTES {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            max: MAX_SEGMENT_BYTES,
        });
    }
    fs::read(path).map_err(io("read", path))
}

/// Reads every record of a ledger directory without modifying it. A torn tail is reported, not
/// removed; damage is an error.
pub fn read_dir(dir: &Path) -> Result<Contents, StoreError> {
    let segs = segments(dir)?;
    let mut contents = Contents {
        segments: segs.len(),
        ..Contents::default()
    };
    let last = segs.len().saturating_sub(1);
    for (i, (_, path)) in segs.iter().enumerate() {
        let bytes = read_capped(path)?;
        let scan = frame::scan(&bytes);
        contents
            .records
            .extend(scan.records.iter().map(|r| r.to_vec()));
        match scan.tail {
            Tail::Clean => {}
            Tail::Torn { .. } if i == last => contents.torn_tail = true,
            Tail::Torn { offset } | Tail::Damaged { offset } => {
                return Err(StoreError::Damaged {
                    path: path.clone(),
                    offset,
                    index: contents.records.len() as u64,
                });
            }
        }
    }
    Ok(contents)
}

/// What recovery did when the store was opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recovery {
    /// Bytes of torn tail removed (0 when the ledger was clean).
    pub truncated_bytes: u64,
}

/// An open ledger directory, positioned for appending.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
    file: File,
    segment: u32,
    segment_len: u64,
    segment_cap: u64,
    pattern: WritePattern,
}

impl Store {
    /// Opens (creating if needed) the ledger in `dir`, recovering a torn tail. Returns the store,
    /// the records already there (for the caller to verify and resume the chain), and what
    /// recovery did.
    pub fn open(
        dir: &Path,
        segment_cap: u64,
        pattern: WritePattern,
    ) -> Result<(Self, Vec<Vec<u8>>, Recovery), StoreError> {
        fs::create_dir_all(dir).map_err(io("create directory", dir))?;
        let segs = segments(dir)?;
        let mut records = Vec::new();
        let mut recovery = Recovery { truncated_bytes: 0 };
        let last = segs.len().saturating_sub(1);
        let mut segment_len = 0;
        for (i, (_, path)) in segs.iter().enumerate() {
            let bytes = read_capped(path)?;
            let scan = frame::scan(&bytes);
            records.extend(scan.records.iter().map(|r| r.to_vec()));
            match scan.tail {
                Tail::Clean => {}
                Tail::Torn { offset } if i == last => {
                    let file = OpenOptions::new()
                        .write(true)
                        .open(path)
                        .map_err(io("open", path))?;
                    file.set_len(offset as u64).map_err(io("truncate", path))?;
                    file.sync_all().map_err(io("fsync", path))?;
                    recovery.truncated_bytes = (bytes.len() - offset) as u64;
                    tracing::warn!(
                        segment = %path.display(),
                        offset,
                        bytes = recovery.truncated_bytes,
                        "ledger: dropped a torn tail left by an interrupted append"
                    );
                }
                Tail::Torn { offset } | Tail::Damaged { offset } => {
                    return Err(StoreError::Damaged {
                        path: path.clone(),
                        offset,
                        index: records.len() as u64,
                    });
                }
            }
            if i == last {
                segment_len = scan.good_len as u64;
            }
        }
        let segment = u32::try_from(last).unwrap_or(u32::MAX);
        let path = segment_path(dir, segment);
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io("open", &path))?;
        if segs.is_empty() {
            sync_dir(dir)?;
        }
        let store = Self {
            dir: dir.to_owned(),
            file,
            segment,
            segment_len,
            segment_cap: segment_cap.max(1),
            pattern,
        };
        Ok((store, records, recovery))
    }

    /// Appends one record and returns only once it is on disk (`fdatasync`).
    pub fn append(&mut self, record: &[u8]) -> Result<(), StoreError> {
        if record.len() > dosegate_core::ledger::MAX_RECORD_LEN {
            return Err(StoreError::RecordTooLarge { len: record.len() });
        }
        if self.segment_len > 0 && self.segment_len >= self.segment_cap {
            self.roll()?;
        }
        let framed = frame::encode(record);
        let path = segment_path(&self.dir, self.segment);
        match self.pattern {
            WritePattern::Whole => self.file.write_all(&framed).map_err(io("append", &path))?,
            WritePattern::Chunked(n) => {
                for chunk in framed.chunks(n.max(1)) {
                    self.file.write_all(chunk).map_err(io("append", &path))?;
                }
            }
        }
        self.file.sync_data().map_err(io("fsync", &path))?;
        self.segment_len += framed.len() as u64;
        Ok(())
    }

    fn roll(&mut self) -> Result<(), StoreError> {
        let next = self.segment + 1;
        let path = segment_path(&self.dir, next);
        self.file = OpenOptions::new()
            .create_new(true)
            .append(true)
            .open(&path)
            .map_err(io("create", &path))?;
        sync_dir(&self.dir)?;
        self.segment = next;
        self.segment_len = 0;
        Ok(())
    }
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync directory", dir))
}

/// Largest event-log file read.
pub const MAX_EVENT_LOG_BYTES: usize = 1024 * 1024;

/// Reads the application PCR's event log (CBOR); a missing file is an empty log.
pub fn load_event_log(path: &Path) -> Result<EventLog, StoreError> {
    if !path.exists() {
        return Ok(EventLog::default());
    }
    let len = fs::metadata(path).map_err(io("stat", path))?.len();
    if len > MAX_EVENT_LOG_BYTES as u64 {
        return Err(StoreError::TooLarge {
            path: path.to_owned(),
            max: MAX_EVENT_LOG_BYTES as u64,
        });
    }
    let bytes = fs::read(path).map_err(io("read", path))?;
    cbor::from_slice(&bytes, MAX_EVENT_LOG_BYTES).map_err(|source| StoreError::EventLog {
        path: path.to_owned(),
        source,
    })
}

/// Writes the event log atomically (temporary file, fsync, rename, fsync directory).
pub fn save_event_log(path: &Path, log: &EventLog) -> Result<(), StoreError> {
    let bytes = cbor::to_vec(log).map_err(|source| StoreError::EventLog {
        path: path.to_owned(),
        source,
    })?;
    let tmp = path.with_extension("tmp");
    {
        let mut file = File::create(&tmp).map_err(io("create", &tmp))?;
        file.write_all(&bytes).map_err(io("write", &tmp))?;
        file.sync_all().map_err(io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("rename", path))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        sync_dir(dir)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;

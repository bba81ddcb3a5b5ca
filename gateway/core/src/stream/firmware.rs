//! Firmware identity and capabilities: what `M115` and `M503` say, hashed for comparison with the
//! commissioning baseline.
//!
//! Owns the `Cap:` grammar and the identity digest. It does not decide whether a mismatch is
//! fatal: [`super::FirmwareCheck`] in the stream configuration does.

use sha2::{Digest, Sha256};

/// What the firmware said it can do in its `M115` answer.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Capabilities {
    /// `FIRMWARE_NAME:` value (up to the next `SOURCE_CODE_URL:`/`PROTOCOL_VERSION:` field).
    pub firmware_name: String,
    /// `Cap:ADVANCED_OK:1`: `ok N P B` replies, so several lines may be in flight.
    pub advanced_ok: bool,
    /// `Cap:AUTOREPORT_TEMP:1`: `M155 S1` makes it report temperatures on its own.
    pub autoreport_temp: bool,
    /// `Cap:EMERGENCY_PARSER:1`: `M112` acts at once, ahead of the command queue.
    pub emergency_parser: bool,
}

impl Capabilities {
    /// Reads the capabilities from the lines of an `M115` answer.
    pub fn from_m115<S: AsRef<str>>(lines: &[S]) -> Self {
        let mut caps = Self::default();
        for line in lines {
            let line = line.as_ref();
            if let Some(rest) = line.split_once("FIRMWARE_NAME:").map(|(_, r)| r) {
                let end = [" SOURCE_CODE_URL:", " PROTOCOL_VERSION:", " MACHINE_TYPE:"]
                    .iter()
                    .filter_map(|k| rest.find(k))
                    .min()
                    .unwrap_or(rest.len());
                caps.firmware_name = rest
                    .get(..end)
                    .unwrap_or(rest)
                    .trim()
                    .chars()
                    .take(96)
                    .collect();
            }
            if let Some(cap) = line.strip_prefix("Cap:") {
                let on = cap.ends_with(":1");
                match cap.split(':').next() {
                    Some("ADVANCED_OK") => caps.advanced_ok = on,
                    Some("AUTOREPORT_TEMP") => caps.autoreport_temp = on,
                    Some("EMERGENCY_PARSER") => caps.emergency_parser = on,
                    _ => {}
                }
            }
        }
        caps
    }
}

/// SHA-256 digests of the firmware's `M115` and `M503` answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FirmwareIdentity {
    /// Digest of the `M115` answer (identity and capabilities).
    pub m115_sha256: [u8; 32],
    /// Digest of the `M503` answer (stored settings: steps/mm, limits, PID, …).
    pub m503_sha256: [u8; 32],
}

/// Digest of an answer: the lines (without `ok`, temperature or busy lines), each followed by
/// `\n`, trailing spaces trimmed.
pub fn answer_digest<S: AsRef<str>>(lines: &[S]) -> [u8; 32] {
    let mut h = Sha256::new();
    for line in lines {
        h.update(line.as_ref().trim_end().as_bytes());
        h.update(b"\n");
    }
    h.finalize().into()
}

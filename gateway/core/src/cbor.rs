//! Deterministic CBOR (RFC 8949 §4.2.1) for everything DoseGate signs.
//!
//! Signed payloads are encoded by serde through `ciborium`: definite lengths, shortest integer and
//! float forms, and struct fields declared in the deterministic key order (shorter text keys first,
//! then bytewise). Decoding is strict: after decoding, the value is encoded again and must give the
//! very same bytes, so two different byte strings can never carry the same signed meaning
//! (no indefinite lengths, no over-long integers, no unsorted or duplicate keys, no trailing bytes).
//!
//! This module does no I/O; it works on byte slices with an explicit size cap.

use serde::{Serialize, de::DeserializeOwned};

/// Why a CBOR item was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CborError {
    /// The input is larger than the cap for this kind of item.
    #[error("CBOR item of {len} bytes exceeds the cap of {max} bytes")]
    TooLarge {
        /// Length of the input.
        len: usize,
        /// The cap that applied.
        max: usize,
    },
    /// The bytes are not a valid CBOR encoding of the expected structure.
    #[error("malformed CBOR: {reason}")]
    Malformed {
        /// What the decoder reported.
        reason: String,
    },
    /// The bytes decode, but are not the one deterministic encoding of their value.
    #[error("CBOR is not in deterministic encoding (RFC 8949 §4.2.1)")]
    NotDeterministic,
    /// Encoding failed (a value that cannot be represented).
    #[error("cannot encode value as CBOR: {reason}")]
    Encode {
        /// What the encoder reported.
        reason: String,
    },
}

/// Encodes `value` as deterministic CBOR.
pub fn to_vec<T: Serialize>(value: &T) -> Result<Vec<u8>, CborError> {
    let mut out = Vec::new();
    ciborium::into_writer(value, &mut out).map_err(|e| CborError::Encode {
        reason: e.to_string(),
    })?;
    Ok(out)
}

/// Decodes `bytes` as a `T`, refusing inputs over `max` bytes and any encoding that is not the
/// deterministic one.
pub fn from_slice<T: Serialize + DeserializeOwned>(
    bytes: &[u8],
    max: usize,
) -> Result<T, CborError> {
    if bytes.len() > max {
        return Err(CborError::TooLarge {
            len: bytes.len(),
            max,
        });
    }
    let mut reader = bytes;
    let value: T = ciborium::from_reader(&mut reader).map_err(|e| CborError::Malformed {
        reason: e.to_string(),
    })?;
    if !reader.is_empty() {
        return Err(CborError::Malformed {
            reason: format!("{} trailing bytes", reader.len()),
        });
    }
    if !encodes_to(&value, bytes)? {
        return Err(CborError::NotDeterministic);
    }
    Ok(value)
}

/// True when the deterministic encoding of `value` is exactly `expected`. The encoding is compared
/// as it is produced, without being collected: a decoded multi-megabyte job is checked without a
/// second copy of it.
pub fn encodes_to<T: Serialize + ?Sized>(value: &T, expected: &[u8]) -> Result<bool, CborError> {
    let mut cmp = Comparer::new(expected);
    match ciborium::into_writer(value, &mut cmp) {
        Ok(()) => Ok(cmp.matched_all()),
        // The comparer stops the encoder at the first difference.
        Err(_) if cmp.differs => Ok(false),
        Err(e) => Err(CborError::Encode {
            reason: e.to_string(),
        }),
    }
}

/// A writer that compares what is written with `rest`, byte for byte, and stops (with an error)
/// at the first difference.
#[derive(Debug)]
pub(crate) struct Comparer<'a> {
    rest: &'a [u8],
    differs: bool,
}

impl<'a> Comparer<'a> {
    /// A comparer against `expected`.
    pub(crate) fn new(expected: &'a [u8]) -> Self {
        Self {
            rest: expected,
            differs: false,
        }
    }

    /// True when everything written so far matched and nothing of `expected` is left over.
    pub(crate) fn matched_all(&self) -> bool {
        !self.differs && self.rest.is_empty()
    }
}

impl std::io::Write for Comparer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self.rest.strip_prefix(buf) {
            Some(rest) if !self.differs => {
                self.rest = rest;
                Ok(buf.len())
            }
            _ => {
                self.differs = true;
                Err(std::io::Error::other("differs from the input"))
            }
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Checks that a generic CBOR value follows the deterministic rules that depend on the value
/// itself rather than its byte form: map keys strictly increasing in bytewise order of their
/// encodings (hence no duplicates). Used by tests to prove our struct field orders are right.
pub fn is_deterministic_value(value: &ciborium::Value) -> bool {
    use ciborium::Value;
    match value {
        Value::Array(items) => items.iter().all(is_deterministic_value),
        Value::Tag(_, inner) => is_deterministic_value(inner),
        Value::Map(entries) => {
            let mut previous: Option<Vec<u8>> = None;
            for (key, val) in entries {
                let Ok(encoded) = to_vec(key) else {
                    return false;
                };
                if previous.as_ref().is_some_and(|p| *p >= encoded) {
                    return false;
                }
                if !is_deterministic_value(key) || !is_deterministic_value(val) {
                    return false;
                }
                previous = Some(encoded);
            }
            true
        }
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Serialize, Deserialize, PartialEq)]
    struct Sample {
        id: u64,
        dose: f64,
        name: String,
    }

    #[test]
    fn round_trips_and_refuses_trailing_bytes() {
        let s = Sample {
            id: 7,
            dose: 12.5,
            name: "x".into(),
        };
        let bytes = to_vec(&s).unwrap();
        assert_eq!(from_slice::<Sample>(&bytes, 1024).unwrap(), s);
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(matches!(
            from_slice::<Sample>(&longer, 1024),
            Err(CborError::Malformed { .. })
        ));
    }

    #[test]
    fn refuses_overlong_integer_encoding() {
        // {"id": 7, ...} with 7 written as a one-byte-argument integer (0x18 0x07) instead of 0x07.
        let s = Sample {
            id: 7,
            dose: 1.0,
            name: String::new(),
        };
        let bytes = to_vec(&s).unwrap();
        let pos = bytes.iter().position(|&b| b == 0x07).unwrap();
        let mut bad = bytes[..pos].to_vec();
        bad.extend_from_slice(&[0x18, 0x07]);
        bad.extend_from_slice(&bytes[pos + 1..]);
        assert_eq!(
            from_slice::<Sample>(&bad, 1024),
            Err(CborError::NotDeterministic)
        );
    }

    #[test]
    fn comparing_encoder_agrees_with_the_collected_encoding() {
        let s = Sample {
            id: 300,
            dose: 12.5,
            name: "printlet".into(),
        };
        let bytes = to_vec(&s).unwrap();
        assert_eq!(encodes_to(&s, &bytes), Ok(true));
        // Shorter, longer and different expectations all differ.
        assert_eq!(encodes_to(&s, &bytes[..bytes.len() - 1]), Ok(false));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(encodes_to(&s, &longer), Ok(false));
        for i in 0..bytes.len() {
            let mut flipped = bytes.clone();
            flipped[i] ^= 0x01;
            assert_eq!(encodes_to(&s, &flipped), Ok(false), "byte {i} flipped");
        }
        assert_eq!(encodes_to(&s, &[]), Ok(false));
    }

    #[test]
    fn refuses_oversized_input_before_decoding() {
        assert_eq!(
            from_slice::<Sample>(&[0u8; 10], 4),
            Err(CborError::TooLarge { len: 10, max: 4 })
        );
    }
}

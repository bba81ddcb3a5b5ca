//! The birth message (retained on `spoke/{gw}/up/birth`) and the Last Will (`up/death`).
//!
//! The birth message tells the hub, every time the gateway connects, which software it runs, what
//! it has measured into its TPM, and where its ledger stands (the head: next seq and hash of the
//! last entry), so the hub can ask `resend-from` for anything it has not stored. `bd` counts the
//! gateway's sessions (Sparkplug's bdSeq): the Last Will registered for session `bd` carries the
//! same number, so the hub can tell a stale death from a current one. Both are deterministic CBOR
//! and bounded; neither carries authority (the ledger entries and TPM quotes do). Does no I/O.

use serde::{Deserialize, Serialize};

use super::{FLEET_FORMAT_VERSION, GatewayId};
use crate::cbor::{self, CborError};

/// Largest birth message, bytes.
pub const MAX_BIRTH_BYTES: usize = 16 * 1024;
/// Most software versions or measurements listed.
pub const MAX_BIRTH_ITEMS: usize = 32;
/// Longest name or version string, bytes.
pub const MAX_BIRTH_TEXT: usize = 128;

/// Where the ledger stands. Fields in deterministic CBOR key order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LedgerHead {
    /// SHA-256 of the last record (zeros when empty).
    #[serde(with = "serde_bytes")]
    pub hash: [u8; 32],
    /// The seq the next record will get.
    pub next: u64,
}

/// One component and its version.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SoftwareVersion {
    /// Component, e.g. `dosegate`.
    pub name: String,
    /// Its version.
    pub version: String,
}

/// One measurement extended into the application PCR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Measurement {
    /// What was measured, e.g. `policy`.
    pub name: String,
    /// Its SHA-256.
    #[serde(with = "serde_bytes")]
    pub sha256: [u8; 32],
}

/// The birth message. Fields in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Birth {
    /// Format version.
    pub v: u8,
    /// Session number (bdSeq).
    pub bd: u64,
    /// The gateway.
    pub gw: GatewayId,
    /// The ledger head.
    pub head: LedgerHead,
    /// Gateway time, Unix milliseconds.
    pub time: u64,
    /// Insecure development mode (file keys instead of the TPM).
    pub insecure: bool,
    /// Software versions.
    pub versions: Vec<SoftwareVersion>,
    /// Measurements.
    pub measurements: Vec<Measurement>,
}

/// The Last Will. Fields in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Death {
    /// Format version.
    pub v: u8,
    /// The session that died.
    pub bd: u64,
    /// The gateway.
    pub gw: GatewayId,
}

/// Why a birth or death message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BirthError {
    /// Not a valid encoding (includes the size cap).
    #[error("birth/death message: {0}")]
    Cbor(#[from] CborError),
    /// Unsupported format version.
    #[error("format version {found} (expected {FLEET_FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u8,
    },
    /// Too many versions or measurements.
    #[error("{count} items where at most {MAX_BIRTH_ITEMS} are allowed")]
    TooManyItems {
        /// How many.
        count: usize,
    },
    /// A name or version string is empty or too long.
    #[error("text of {len} bytes (must be 1..={MAX_BIRTH_TEXT})")]
    Text {
        /// Its length.
        len: usize,
    },
}

fn check_text(s: &str) -> Result<(), BirthError> {
    if s.is_empty() || s.len() > MAX_BIRTH_TEXT {
        return Err(BirthError::Text { len: s.len() });
    }
    Ok(())
}

impl Birth {
    /// Encodes the message after checking its bounds.
    pub fn to_cbor(&self) -> Result<Vec<u8>, BirthError> {
        self.check()?;
        Ok(cbor::to_vec(self)?)
    }

    /// Decodes and checks a birth message.
    pub fn decode(bytes: &[u8]) -> Result<Self, BirthError> {
        let birth: Self = cbor::from_slice(bytes, MAX_BIRTH_BYTES)?;
        birth.check()?;
        Ok(birth)
    }

    fn check(&self) -> Result<(), BirthError> {
        if self.v != FLEET_FORMAT_VERSION {
            return Err(BirthError::Version { found: self.v });
        }
        for count in [self.versions.len(), self.measurements.len()] {
            if count > MAX_BIRTH_ITEMS {
                return Err(BirthError::TooManyItems { count });
            }
        }
        for v in &self.versions {
            check_text(&v.name)?;
            check_text(&v.version)?;
        }
        for m in &self.measurements {
            check_text(&m.name)?;
        }
        Ok(())
    }
}

impl Death {
    /// Encodes the Last Will.
    pub fn to_cbor(&self) -> Result<Vec<u8>, BirthError> {
        Ok(cbor::to_vec(self)?)
    }

    /// Decodes a Last Will.
    pub fn decode(bytes: &[u8]) -> Result<Self, BirthError> {
        let death: Self = cbor::from_slice(bytes, 256)?;
        if death.v != FLEET_FORMAT_VERSION {
            return Err(BirthError::Version { found: death.v });
        }
        Ok(death)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn birth() -> Birth {
        Birth {
            v: FLEET_FORMAT_VERSION,
            bd: 3,
            gw: GatewayId::new("spoke-01").unwrap(),
            head: LedgerHead {
                hash: [9; 32],
                next: 12,
            },
            time: 1_700_000_000_000,
            insecure: true,
            versions: vec![SoftwareVersion {
                name: "dosegate".into(),
                version: "0.1.0".into(),
            }],
            measurements: vec![Measurement {
                name: "policy".into(),
                sha256: [1; 32],
            }],
        }
    }

    #[test]
    fn birth_and_death_round_trip_in_deterministic_cbor() {
        let b = birth();
        let bytes = b.to_cbor().unwrap();
        let value: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        assert!(cbor::is_deterministic_value(&value));
        assert_eq!(Birth::decode(&bytes).unwrap(), b);
        let d = Death {
            v: FLEET_FORMAT_VERSION,
            bd: 3,
            gw: b.gw.clone(),
        };
        let bytes = d.to_cbor().unwrap();
        let value: ciborium::Value = ciborium::from_reader(bytes.as_slice()).unwrap();
        assert!(cbor::is_deterministic_value(&value));
        assert_eq!(Death::decode(&bytes).unwrap(), d);
    }

    #[test]
    fn refuses_unbounded_birth_messages() {
        let mut b = birth();
        b.versions = (0..40)
            .map(|i| SoftwareVersion {
                name: format!("c{i}"),
                version: "1".into(),
            })
            .collect();
        assert_eq!(b.to_cbor(), Err(BirthError::TooManyItems { count: 40 }));
        let bytes = cbor::to_vec(&b).unwrap();
        assert_eq!(
            Birth::decode(&bytes),
            Err(BirthError::TooManyItems { count: 40 })
        );
        let mut b = birth();
        b.measurements[0].name = String::new();
        assert_eq!(b.to_cbor(), Err(BirthError::Text { len: 0 }));
    }

    #[test]
    fn refuses_a_gateway_id_that_is_not_valid() {
        let mut value: ciborium::Value =
            ciborium::from_reader(birth().to_cbor().unwrap().as_slice()).unwrap();
        if let ciborium::Value::Map(entries) = &mut value {
            for (k, v) in entries.iter_mut() {
                if k.as_text() == Some("gw") {
                    *v = ciborium::Value::Text("spoke/#".into());
                }
            }
        }
        let bytes = cbor::to_vec(&value).unwrap();
        assert!(matches!(Birth::decode(&bytes), Err(BirthError::Cbor(_))));
    }
}

//! The event log of the application PCR: each measurement the gateway extended, in order.
//!
//! A PCR starts at 32 zero bytes after a TPM reset and each extend sets
//! `pcr = SHA-256(pcr ‖ digest)`. Replaying the log reproduces the value a quote reports, so the
//! verifier learns *which* binary, config, trust root, policy and model were measured, and can
//! compare each digest with the hub's golden values. This module does no I/O.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Most measurements one log may hold (a fresh log per TPM reset; a few per daemon start).
pub const MAX_MEASUREMENTS: usize = 1024;

/// What a measurement is of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Component {
    /// The gateway binary.
    Binary,
    /// The gateway's configuration file.
    Config,
    /// The pinned hub trust root.
    TrustRoot,
    /// The active policy (design space) bundle.
    Policy,
    /// The active PAT model bundle.
    Model,
}

impl Component {
    /// The name used in logs, JSON and trust files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Binary => "binary",
            Self::Config => "config",
            Self::TrustRoot => "trust-root",
            Self::Policy => "policy",
            Self::Model => "model",
        }
    }
}

/// One extend of the application PCR.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Measurement {
    /// The PCR index extended.
    pub pcr: u8,
    /// What was measured.
    pub what: Component,
    /// SHA-256 of the measured bytes; this is the value extended.
    #[serde(with = "serde_bytes")]
    pub digest: [u8; 32],
}

/// Why an event log does not match.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MeasurementError {
    /// More than [`MAX_MEASUREMENTS`] entries.
    #[error("event log of {len} measurements exceeds the cap of {MAX_MEASUREMENTS}")]
    TooLong {
        /// Entries in the log.
        len: usize,
    },
    /// A measurement was extended into another PCR than the application PCR.
    #[error("measurement {index} extends PCR {pcr}, not the application PCR {expected}")]
    WrongPcr {
        /// Position in the log.
        index: usize,
        /// The PCR it names.
        pcr: u8,
        /// The application PCR.
        expected: u8,
    },
    /// A measured digest is not among the golden values for its component.
    #[error("measurement {index} of {} has digest {} which is not a golden value", what.as_str(), hex::encode(digest))]
    NotGolden {
        /// Position in the log.
        index: usize,
        /// What was measured.
        what: Component,
        /// The digest found.
        digest: [u8; 32],
    },
    /// A component the golden values require was never measured.
    #[error("{} was never measured", what.as_str())]
    Missing {
        /// The component.
        what: Component,
    },
}

/// The application PCR's event log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct EventLog(pub Vec<Measurement>);

impl EventLog {
    /// Replays the log for `pcr`: the value the PCR must hold if this log is complete.
    pub fn replay(&self, pcr: u8) -> Result<[u8; 32], MeasurementError> {
        if self.0.len() > MAX_MEASUREMENTS {
            return Err(MeasurementError::TooLong { len: self.0.len() });
        }
        let mut value = [0u8; 32];
        for (index, m) in self.0.iter().enumerate() {
            if m.pcr != pcr {
                return Err(MeasurementError::WrongPcr {
                    index,
                    pcr: m.pcr,
                    expected: pcr,
                });
            }
            value = extend(&value, &m.digest);
        }
        Ok(value)
    }

    /// Checks every measurement against the golden values, and that each component with golden
    /// values was measured at least once.
    pub fn check_golden(&self, golden: &GoldenValues) -> Result<(), MeasurementError> {
        let mut seen = BTreeSet::new();
        for (index, m) in self.0.iter().enumerate() {
            let ok = golden
                .0
                .get(&m.what)
                .is_some_and(|set| set.contains(&m.digest));
            if !ok {
                return Err(MeasurementError::NotGolden {
                    index,
                    what: m.what,
                    digest: m.digest,
                });
            }
            seen.insert(m.what);
        }
        if let Some(what) = golden.0.keys().find(|c| !seen.contains(*c)) {
            return Err(MeasurementError::Missing { what: *what });
        }
        Ok(())
    }
}

/// The hub's expected digests per component (several allowed, e.g. during a roll-out).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GoldenValues(pub BTreeMap<Component, BTreeSet<[u8; 32]>>);

/// One PCR extend: `SHA-256(old ‖ digest)`.
pub fn extend(old: &[u8; 32], digest: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(old);
    h.update(digest);
    h.finalize().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(what: Component, b: u8) -> Measurement {
        Measurement {
            pcr: 16,
            what,
            digest: [b; 32],
        }
    }

    #[test]
    fn replay_matches_manual_extends() {
        let log = EventLog(vec![m(Component::Binary, 1), m(Component::Policy, 2)]);
        let expected = extend(&extend(&[0; 32], &[1; 32]), &[2; 32]);
        assert_eq!(log.replay(16).unwrap(), expected);
        // Known vector: one extend of 32 × 0x01 into a zero PCR.
        assert_eq!(
            hex::encode(extend(&[0; 32], &[1; 32])),
            hex::encode(Sha256::digest([[0u8; 32], [1u8; 32]].concat()))
        );
    }

    #[test]
    fn replay_refuses_a_measurement_into_another_pcr() {
        let mut other = m(Component::Model, 3);
        other.pcr = 23;
        let log = EventLog(vec![m(Component::Binary, 1), other]);
        assert_eq!(
            log.replay(16),
            Err(MeasurementError::WrongPcr {
                index: 1,
                pcr: 23,
                expected: 16
            })
        );
    }

    #[test]
    fn golden_check_names_the_unexpected_model() {
        let mut golden = GoldenValues::default();
        golden
            .0
            .insert(Component::Binary, BTreeSet::from([[1; 32]]));
        golden.0.insert(Component::Model, BTreeSet::from([[3; 32]]));
        let good = EventLog(vec![m(Component::Binary, 1), m(Component::Model, 3)]);
        assert_eq!(good.check_golden(&golden), Ok(()));
        let bad = EventLog(vec![m(Component::Binary, 1), m(Component::Model, 4)]);
        assert_eq!(
            bad.check_golden(&golden),
            Err(MeasurementError::NotGolden {
                index: 1,
                what: Component::Model,
                digest: [4; 32]
            })
        );
        let missing = EventLog(vec![m(Component::Binary, 1)]);
        assert_eq!(
            missing.check_golden(&golden),
            Err(MeasurementError::Missing {
                what: Component::Model
            })
        );
    }
}

//! The PAT instruments as the core sees them: a [`Spectrometer`] that yields a [`Spectrum`] per
//! unit, a [`Balance`] that weighs one, and the MT-SICS (Mettler Toledo Standard Interface Command
//! Set, level 0) messages a balance speaks over serial — `S` (stable weight) and `SI` (weight
//! immediately) and their responses.
//!
//! Only the traits and the sans-IO codec live here. The adapters that open serial ports or watch
//! folders are in the daemon (`spectrometer.rs`, `balance.rs`), the simulators in
//! `dosegate-instrument-sim`. This module does no I/O.

use serde::Serialize;

use crate::spectrum::Spectrum;

/// Longest MT-SICS response line accepted, bytes (without CR LF).
pub const MAX_RESPONSE_LEN: usize = 128;

/// Something that measures a unit's spectrum.
pub trait Spectrometer {
    /// What can go wrong.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Measures unit `unit` (1-based) of the current job.
    fn acquire(&mut self, unit: u32) -> Result<Spectrum, Self::Error>;
}

/// Something that weighs a unit.
pub trait Balance {
    /// What can go wrong.
    type Error: std::error::Error + Send + Sync + 'static;
    /// Weighs what is on the pan.
    fn weigh(&mut self, mode: WeighMode) -> Result<Weighing, Self::Error>;
}

/// Which MT-SICS weighing command to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum WeighMode {
    /// `S`: wait for a stable weight.
    Stable,
    /// `SI`: the current weight at once, stable or not.
    Immediate,
}

impl WeighMode {
    /// The command line, with its CR LF terminator.
    pub fn command(self) -> &'static [u8] {
        match self {
            WeighMode::Stable => b"S\r\n",
            WeighMode::Immediate => b"SI\r\n",
        }
    }
}

/// A weight reported by the balance.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Weighing {
    /// Net mass, mg.
    pub mass_mg: f64,
    /// False when the balance reported a dynamic (unstable) value (`S D`).
    pub stable: bool,
}

/// An MT-SICS response that is not a weight.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MtSicsError {
    /// `S I`: command understood, not executable now (balance busy, e.g. taring).
    #[error("balance busy (S I)")]
    Busy,
    /// `S +`: overload.
    #[error("balance overload (S +)")]
    Overload,
    /// `S -`: underload (pan removed?).
    #[error("balance underload (S -)")]
    Underload,
    /// `ES`: the balance did not recognise the command.
    #[error("balance reports a syntax error (ES)")]
    Syntax,
    /// `ET`: transmission error.
    #[error("balance reports a transmission error (ET)")]
    Transmission,
    /// `EL`: logical error (command cannot be executed).
    #[error("balance reports a logical error (EL)")]
    Logical,
    /// A weight in a unit other than g, mg or kg.
    #[error("weight unit {unit:?} is not g, mg or kg")]
    Unit {
        /// The unit.
        unit: String,
    },
    /// A line that is not an MT-SICS weight response.
    #[error("malformed response {line:?}")]
    Malformed {
        /// The line (truncated).
        line: String,
    },
    /// A line longer than [`MAX_RESPONSE_LEN`].
    #[error("response longer than {MAX_RESPONSE_LEN} bytes")]
    TooLong,
}

/// Parses the response to `S` or `SI` (one line, CR LF optional).
pub fn parse_weight_response(line: &str) -> Result<Weighing, MtSicsError> {
    if line.len() > MAX_RESPONSE_LEN + 2 {
        return Err(MtSicsError::TooLong);
    }
    let line = line.trim_end_matches(['\r', '\n']);
    let malformed = || MtSicsError::Malformed {
        line: line.chars().take(40).collect(),
    };
    match line.trim() {
        "ES" => return Err(MtSicsError::Syntax),
        "ET" => return Err(MtSicsError::Transmission),
        "EL" => return Err(MtSicsError::Logical),
        _ => {}
    }
    let mut fields = line.split_whitespace();
    let (Some(cmd), Some(status)) = (fields.next(), fields.next()) else {
        return Err(malformed());
    };
    if cmd != "S" && cmd != "SI" {
        return Err(malformed());
    }
    let stable = match status {
        "S" => true,
        "D" => false,
        "I" => return Err(MtSicsError::Busy),
        "+" => return Err(MtSicsError::Overload),
        "-" => return Err(MtSicsError::Underload),
        _ => return Err(malformed()),
    };
    let (Some(value), Some(unit), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(malformed());
    };
    let value: f64 = value.parse().map_err(|_| malformed())?;
    if !value.is_finite() {
        return Err(malformed());
    }
    let factor = match unit {
        "mg" => 1.0,
        "g" => 1e3,
        "kg" => 1e6,
        other => {
            return Err(MtSicsError::Unit {
                unit: other.chars().take(8).collect(),
            });
        }
    };
    Ok(Weighing {
        mass_mg: value * factor,
        stable,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_stable_and_dynamic_weights_in_any_unit() {
        assert_eq!(
            parse_weight_response("S S      0.25012 g\r\n"),
            Ok(Weighing {
                mass_mg: 250.12,
                stable: true
            })
        );
        let w = parse_weight_response("S D    251.3 mg").unwrap();
        assert!(!w.stable && (w.mass_mg - 251.3).abs() < 1e-12);
        assert!((parse_weight_response("S S 0.001 kg").unwrap().mass_mg - 1000.0).abs() < 1e-9);
    }

    #[test]
    fn maps_every_error_response() {
        for (line, err) in [
            ("S I", MtSicsError::Busy),
            ("S +", MtSicsError::Overload),
            ("S -", MtSicsError::Underload),
            ("ES", MtSicsError::Syntax),
            ("ET", MtSicsError::Transmission),
            ("EL", MtSicsError::Logical),
        ] {
            assert_eq!(parse_weight_response(line), Err(err), "{line}");
        }
        assert!(matches!(
            parse_weight_response("S S 1.0 lb"),
            Err(MtSicsError::Unit { .. })
        ));
        assert!(matches!(
            parse_weight_response("X S 1.0 g"),
            Err(MtSicsError::Malformed { .. })
        ));
        assert!(matches!(
            parse_weight_response("S S NaN g"),
            Err(MtSicsError::Malformed { .. })
        ));
        assert_eq!(
            parse_weight_response(&"S".repeat(400)),
            Err(MtSicsError::TooLong)
        );
    }
}

//! The prescription: what the hub orders a spoke to print, as written by a pharmacist in TOML and
//! carried inside the signed job.
//!
//! This module parses and validates the human-written TOML (`provisioning/examples/*.toml`) into
//! typed values with units in their names; it does no I/O. The G-code hash is not part of the
//! TOML: the hub tool binds the SHA-256 of the slicer output into the signed job.

use serde::{Deserialize, Serialize};

/// Longest accepted identifier (product, policy, patient pseudonym, ink lot, model id), in bytes.
pub const MAX_ID_LEN: usize = 64;
/// Most printlets in one job.
pub const MAX_UNITS: u32 = 1000;
/// Most model ids named by one job.
pub const MAX_MODELS: usize = 8;

/// Why a prescription was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PrescriptionError {
    /// Not valid TOML for this schema (unknown keys included).
    #[error("prescription is not valid: {reason}")]
    Syntax {
        /// What the TOML parser reported.
        reason: String,
    },
    /// An identifier is empty, too long or has characters outside `[A-Za-z0-9._-]`.
    #[error("{field} {value:?} is not a valid identifier (1–{MAX_ID_LEN} of A–Z a–z 0–9 . _ -)")]
    BadIdentifier {
        /// The field.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A number is outside its physical range.
    #[error("{field} = {value} is outside {min} … {max}")]
    OutOfRange {
        /// The field.
        field: &'static str,
        /// The value.
        value: f64,
        /// Lowest allowed.
        min: f64,
        /// Highest allowed.
        max: f64,
    },
    /// Too many model ids.
    #[error("{count} models named; at most {MAX_MODELS}")]
    TooManyModels {
        /// How many were named.
        count: usize,
    },
}

/// The material the printer extrudes: a drug-loaded filament or paste of one lot.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Formulation {
    /// The ink (filament or paste) lot.
    pub ink_lot: String,
    /// Mass fraction of API in the ink (0 < f ≤ 1).
    pub api_fraction: f64,
    /// Density of the ink in g/cm³ (numerically mg/mm³).
    pub density_g_cm3: f64,
}

/// The policy (design space) a job must be checked against: id and version; the hub tool adds the
/// policy file's SHA-256 when it signs the job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyRef {
    /// Policy id, e.g. `fdm-hctz-printlet`.
    pub id: String,
    /// Policy version.
    pub version: u32,
}

/// A prescription as written in TOML.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Prescription {
    /// Pseudonymous patient reference (never a name or hospital number).
    pub patient_ref: String,
    /// Product code (one product × printer has one policy).
    pub product: String,
    /// Drug dose per unit, mg.
    pub dose_mg: f64,
    /// Allowed deviation of each unit's dose, percent of `dose_mg`.
    pub tolerance_pct: f64,
    /// Number of units (printlets) the G-code prints.
    pub units: u32,
    /// The ink.
    pub formulation: Formulation,
    /// The design space to check against.
    pub policy: PolicyRef,
    /// PAT model ids to release the units with.
    #[serde(default)]
    pub models: Vec<String>,
}

pub(crate) fn check_id(field: &'static str, value: &str) -> Result<(), PrescriptionError> {
    let ok = !value.is_empty()
        && value.len() <= MAX_ID_LEN
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(PrescriptionError::BadIdentifier {
            field,
            value: value.chars().take(MAX_ID_LEN + 8).collect(),
        })
    }
}

fn check_range(
    field: &'static str,
    value: f64,
    min: f64,
    max: f64,
) -> Result<(), PrescriptionError> {
    // `contains` is false for NaN, so NaN is refused too.
    if (min..=max).contains(&value) {
        Ok(())
    } else {
        Err(PrescriptionError::OutOfRange {
            field,
            value,
            min,
            max,
        })
    }
}

impl Prescription {
    /// Parses and validates a prescription from TOML text.
    pub fn from_toml(text: &str) -> Result<Self, PrescriptionError> {
        let rx: Prescription = toml::from_str(text).map_err(|e| PrescriptionError::Syntax {
            reason: e.message().to_owned(),
        })?;
        rx.validate()?;
        Ok(rx)
    }

    /// Checks every field's range and form.
    pub fn validate(&self) -> Result<(), PrescriptionError> {
        check_id("patient_ref", &self.patient_ref)?;
        check_id("product", &self.product)?;
        check_id("formulation.ink_lot", &self.formulation.ink_lot)?;
        check_id("policy.id", &self.policy.id)?;
        check_range("dose_mg", self.dose_mg, 0.001, 10_000.0)?;
        check_range("tolerance_pct", self.tolerance_pct, 0.0, 50.0)?;
        check_range("units", f64::from(self.units), 1.0, f64::from(MAX_UNITS))?;
        check_range(
            "formulation.api_fraction",
            self.formulation.api_fraction,
            1e-6,
            1.0,
        )?;
        check_range(
            "formulation.density_g_cm3",
            self.formulation.density_g_cm3,
            0.1,
            5.0,
        )?;
        if self.models.len() > MAX_MODELS {
            return Err(PrescriptionError::TooManyModels {
                count: self.models.len(),
            });
        }
        for m in &self.models {
            check_id("models[]", m)?;
        }
        Ok(())
    }

    /// Checks that `value` is a valid identifier (1–64 of `A–Z a–z 0–9 . _ -`), for ids that
    /// other tools accept (gateway ids, hub ids).
    pub fn check_identifier(field: &'static str, value: &str) -> Result<(), PrescriptionError> {
        check_id(field, value)
    }

    /// The lowest and highest dose per unit the tolerance allows, mg.
    pub fn dose_window_mg(&self) -> (f64, f64) {
        let delta = self.dose_mg * self.tolerance_pct / 100.0;
        (self.dose_mg - delta, self.dose_mg + delta)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const RX: &str = r#"
patient_ref = "pt-7f3a9c"
product = "hctz-printlet"
dose_mg = 12.5
tolerance_pct = 7.5
units = 2
models = ["nir-dyrby2002"]

[formulation]
ink_lot = "HCTZ-PVA-2026-041"
api_fraction = 0.10
density_g_cm3 = 1.25

[policy]
id = "fdm-hctz-printlet"
version = 1
"#;

    #[test]
    fn parses_the_documented_example() {
        let rx = Prescription::from_toml(RX).unwrap();
        assert_eq!(rx.units, 2);
        let (lo, hi) = rx.dose_window_mg();
        assert!((lo - 11.5625).abs() < 1e-12 && (hi - 13.4375).abs() < 1e-12);
    }

    #[test]
    fn refuses_unknown_keys() {
        let text = format!("{RX}\nextra = 1\n");
        assert!(matches!(
            Prescription::from_toml(&text),
            Err(PrescriptionError::Syntax { .. })
        ));
    }

    #[test]
    fn refuses_nan_and_negative_doses() {
        for bad in ["nan", "-1.0", "0.0"] {
            let text = RX.replace("dose_mg = 12.5", &format!("dose_mg = {bad}"));
            assert!(
                matches!(
                    Prescription::from_toml(&text),
                    Err(PrescriptionError::OutOfRange {
                        field: "dose_mg",
                        ..
                    })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn refuses_identifiers_with_path_or_control_characters() {
        let text = RX.replace("pt-7f3a9c", "../etc/passwd");
        assert!(matches!(
            Prescription::from_toml(&text),
            Err(PrescriptionError::BadIdentifier {
                field: "patient_ref",
                ..
            })
        ));
    }
}

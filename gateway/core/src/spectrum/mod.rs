//! Spectra as the gateway receives them: an [`Axis`] (unit and strictly monotonic values) and a
//! [`Spectrum`] of exactly that many finite intensities.
//!
//! This module owns the readers for the two input forms — JCAMP-DX ([`jcamp`], AFFN and the
//! compressed ASDF forms) and the CSV layout of the shared calibration data ([`csv`]) — and the
//! axis comparison a model applies before it will look at a spectrum. A mismatching axis is
//! refused with the evidence; it is never interpolated, because a shift of a single point was shown
//! to bias predictions by more than 1 % w/w. It does no I/O: readers take text that the caller has
//! already read (and size-capped).

pub mod csv;
pub mod jcamp;

use serde::{Deserialize, Serialize};

/// Most points on one spectral axis (Raman spectra have a few thousand).
pub const MAX_POINTS: usize = 65_536;

/// The physical unit of an axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AxisUnit {
    /// Wavenumber or Raman shift, cm⁻¹.
    PerCentimetre,
    /// Wavelength, nm.
    Nanometre,
}

impl AxisUnit {
    /// The unit as written on a label.
    pub fn label(self) -> &'static str {
        match self {
            AxisUnit::PerCentimetre => "cm-1",
            AxisUnit::Nanometre => "nm",
        }
    }
}

/// Why a spectrum or axis was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SpectrumError {
    /// Fewer than two or more than [`MAX_POINTS`] points.
    #[error("{len} points; an axis has 2 … {MAX_POINTS}")]
    BadLength {
        /// How many points there were.
        len: usize,
    },
    /// A value is NaN or infinite.
    #[error("value at index {index} is not finite")]
    NotFinite {
        /// Index of the value.
        index: usize,
    },
    /// The axis is not strictly increasing or strictly decreasing.
    #[error("axis is not strictly monotonic at index {index} ({previous} then {value})")]
    NotMonotonic {
        /// Index of the offending value.
        index: usize,
        /// The value before it.
        previous: f64,
        /// The value.
        value: f64,
    },
    /// Intensities and axis have different lengths.
    #[error("{values} intensities for an axis of {axis} points")]
    LengthMismatch {
        /// Number of intensities.
        values: usize,
        /// Number of axis points.
        axis: usize,
    },
}

/// Why a spectrum's axis does not match a model's.
#[derive(Debug, Clone, PartialEq, thiserror::Error, Serialize, Deserialize)]
pub enum AxisMismatch {
    /// Different units.
    #[error("axis unit {got:?}, model expects {expected:?}")]
    Unit {
        /// The model's unit.
        expected: AxisUnit,
        /// The spectrum's unit.
        got: AxisUnit,
    },
    /// Different number of points.
    #[error("{got} points, model expects {expected}")]
    Length {
        /// The model's length.
        expected: usize,
        /// The spectrum's length.
        got: usize,
    },
    /// A point is further from the model's than the tolerance.
    #[error("axis point {index} is {got}, model expects {expected} ± {tolerance}")]
    Value {
        /// Index of the first differing point.
        index: usize,
        /// The model's value.
        expected: f64,
        /// The spectrum's value.
        got: f64,
        /// The tolerance that applied.
        tolerance: f64,
    },
}

/// A spectral axis: unit and strictly monotonic, finite values (ascending or descending).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Axis {
    unit: AxisUnit,
    values: Vec<f64>,
}

impl Axis {
    /// Checks and wraps axis values.
    pub fn new(unit: AxisUnit, values: Vec<f64>) -> Result<Self, SpectrumError> {
        if values.len() < 2 || values.len() > MAX_POINTS {
            return Err(SpectrumError::BadLength { len: values.len() });
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(SpectrumError::NotFinite { index });
        }
        let ascending = values.get(1) > values.first();
        for (i, pair) in values.windows(2).enumerate() {
            let (a, b) = (pair.first().copied(), pair.get(1).copied());
            let (Some(a), Some(b)) = (a, b) else { continue };
            let ok = if ascending { b > a } else { b < a };
            if !ok {
                return Err(SpectrumError::NotMonotonic {
                    index: i + 1,
                    previous: a,
                    value: b,
                });
            }
        }
        Ok(Axis { unit, values })
    }

    /// The unit.
    pub fn unit(&self) -> AxisUnit {
        self.unit
    }

    /// The values, in order.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always false: an axis has at least two points.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Checks `other` point by point against this axis, allowing `tolerance` in axis units.
    pub fn check_matches(&self, other: &Axis, tolerance: f64) -> Result<(), AxisMismatch> {
        if self.unit != other.unit {
            return Err(AxisMismatch::Unit {
                expected: self.unit,
                got: other.unit,
            });
        }
        if self.len() != other.len() {
            return Err(AxisMismatch::Length {
                expected: self.len(),
                got: other.len(),
            });
        }
        for (index, (&expected, &got)) in self.values.iter().zip(&other.values).enumerate() {
            // Written so that NaN fails too.
            let within = (expected - got).abs() <= tolerance;
            if !within {
                return Err(AxisMismatch::Value {
                    index,
                    expected,
                    got,
                    tolerance,
                });
            }
        }
        Ok(())
    }
}

/// One measured spectrum: an axis and exactly as many finite intensities.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    axis: Axis,
    values: Vec<f64>,
}

impl Spectrum {
    /// Checks and wraps intensities measured on `axis`.
    pub fn new(axis: Axis, values: Vec<f64>) -> Result<Self, SpectrumError> {
        if values.len() != axis.len() {
            return Err(SpectrumError::LengthMismatch {
                values: values.len(),
                axis: axis.len(),
            });
        }
        if let Some(index) = values.iter().position(|v| !v.is_finite()) {
            return Err(SpectrumError::NotFinite { index });
        }
        Ok(Spectrum { axis, values })
    }

    /// The axis.
    pub fn axis(&self) -> &Axis {
        &self.axis
    }

    /// The intensities, in axis order.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Number of points.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Always false: a spectrum has at least two points.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_non_monotonic_and_non_finite_axes() {
        assert!(matches!(
            Axis::new(AxisUnit::Nanometre, vec![1.0, 2.0, 2.0]),
            Err(SpectrumError::NotMonotonic { index: 2, .. })
        ));
        assert_eq!(
            Axis::new(AxisUnit::Nanometre, vec![1.0, f64::NAN]),
            Err(SpectrumError::NotFinite { index: 1 })
        );
        assert!(Axis::new(AxisUnit::PerCentimetre, vec![3.0, 2.0, 1.0]).is_ok());
    }

    #[test]
    fn axis_shifted_by_a_point_is_a_mismatch_with_evidence() {
        let a = Axis::new(AxisUnit::Nanometre, vec![600.0, 602.0, 604.0]).unwrap();
        let b = Axis::new(AxisUnit::Nanometre, vec![602.0, 604.0, 606.0]).unwrap();
        assert_eq!(
            a.check_matches(&b, 0.01),
            Err(AxisMismatch::Value {
                index: 0,
                expected: 600.0,
                got: 602.0,
                tolerance: 0.01
            })
        );
        let c = Axis::new(AxisUnit::PerCentimetre, vec![600.0, 602.0, 604.0]).unwrap();
        assert!(matches!(
            a.check_matches(&c, 0.01),
            Err(AxisMismatch::Unit { .. })
        ));
        assert!(a.check_matches(&a.clone(), 0.0).is_ok());
    }

    #[test]
    fn spectrum_length_must_equal_axis_length() {
        let a = Axis::new(AxisUnit::Nanometre, vec![600.0, 602.0]).unwrap();
        assert_eq!(
            Spectrum::new(a, vec![1.0]),
            Err(SpectrumError::LengthMismatch { values: 1, axis: 2 })
        );
    }
}

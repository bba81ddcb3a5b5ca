//! Control limits of a PLS model's domain: Hotelling T² from the F distribution and Q (squared
//! prediction error) from Jackson–Mudholkar where it is valid, Box's scaled χ² otherwise.
//!
//! T²_lim = A(n−1)/(n−A) · F(A, n−A; 1−α). For Q the residual eigenvalue sums θ₁, θ₂, θ₃ of the
//! training residuals are used; Jackson–Mudholkar needs h₀ = 1 − 2θ₁θ₃/(3θ₂²) > 0 and breaks
//! otherwise (the Raman model gives h₀ < 0 and a "99 %" limit below the 95 % one), so the limit
//! falls back to Box's g·χ²(h) with g = θ₂/θ₁, h = θ₁²/θ₂, and the method is recorded in the
//! model. This module does no I/O.

use ndarray::Array2;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF, FisherSnedecor, Normal};

/// How a model's Q limits were computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QMethod {
    /// Jackson & Mudholkar (1979), valid when h₀ > 0.
    JacksonMudholkar,
    /// Box (1954) scaled χ².
    BoxChiSquared,
}

/// Why limits could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum LimitError {
    /// Not enough samples for the F distribution (n must exceed A).
    #[error("{n} samples for {components} latent variables")]
    TooFewSamples {
        /// Samples.
        n: usize,
        /// Latent variables.
        components: usize,
    },
    /// Residuals are all zero or not finite.
    #[error("training residuals have no variance")]
    NoResidual,
}

/// The T² limit at confidence `confidence` (e.g. 0.99).
pub fn t2_limit(n: usize, components: usize, confidence: f64) -> Result<f64, LimitError> {
    let too_few = LimitError::TooFewSamples { n, components };
    if components == 0 || n <= components + 1 {
        return Err(too_few);
    }
    let (nf, af) = (n as f64, components as f64);
    let f = FisherSnedecor::new(af, nf - af).map_err(|_| too_few)?;
    Ok(af * (nf - 1.0) / (nf - af) * f.inverse_cdf(confidence))
}

/// θ₁, θ₂, θ₃: sums of the first three powers of the eigenvalues of the residual covariance
/// EᵀE/(n−1), computed through the n × n Gram matrix.
pub fn residual_thetas(residuals: &Array2<f64>) -> (f64, f64, f64) {
    let n = residuals.nrows() as f64;
    let g = residuals.dot(&residuals.t()) / (n - 1.0);
    let theta1 = g.diag().sum();
    let theta2 = g.iter().map(|v| v * v).sum();
    let g2 = g.dot(&g);
    let theta3 = g2.iter().zip(g.t().iter()).map(|(a, b)| a * b).sum();
    (theta1, theta2, theta3)
}

/// Q limits at 95 % and 99 % and the method used.
pub fn q_limits(residuals: &Array2<f64>) -> Result<(f64, f64, QMethod), LimitError> {
    let (t1, t2, t3) = residual_thetas(residuals);
    if !(t1 > 0.0 && t2 > 0.0 && t1.is_finite() && t2.is_finite() && t3.is_finite()) {
        return Err(LimitError::NoResidual);
    }
    let h0 = 1.0 - 2.0 * t1 * t3 / (3.0 * t2 * t2);
    if h0 > 0.0 {
        let normal = Normal::standard();
        let jm = |confidence: f64| {
            let z = normal.inverse_cdf(confidence);
            let inner =
                z * (2.0 * t2 * h0 * h0).sqrt() / t1 + 1.0 + t2 * h0 * (h0 - 1.0) / (t1 * t1);
            t1 * inner.powf(1.0 / h0)
        };
        let (q95, q99) = (jm(0.95), jm(0.99));
        if q95.is_finite() && q99.is_finite() && q99 > q95 && q95 > 0.0 {
            return Ok((q95, q99, QMethod::JacksonMudholkar));
        }
    }
    let g = t2 / t1;
    let h = t1 * t1 / t2;
    let chi = ChiSquared::new(h).map_err(|_| LimitError::NoResidual)?;
    Ok((
        g * chi.inverse_cdf(0.95),
        g * chi.inverse_cdf(0.99),
        QMethod::BoxChiSquared,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t2_limit_matches_tabulated_f_quantiles() {
        // F(1, 20; 0.99) = 8.0960 (tables): limit = 1·(21−1)/(21−1) · 8.0960.
        let l = t2_limit(21, 1, 0.99).unwrap();
        assert!((l - 8.096).abs() < 1e-3, "{l}");
        // F(2, 18; 0.95) = 3.5546: limit = 2·20/18 · 3.5546.
        let l = t2_limit(20, 2, 0.95).unwrap();
        assert!((l - 2.0 * 19.0 / 18.0 * 3.5546).abs() < 1e-3, "{l}");
        assert!(t2_limit(21, 2, 0.99).unwrap() > t2_limit(21, 2, 0.95).unwrap());
        assert_eq!(
            t2_limit(3, 2, 0.99),
            Err(LimitError::TooFewSamples {
                n: 3,
                components: 2
            })
        );
    }

    #[test]
    fn box_limit_for_isotropic_residuals_is_a_chi_square_quantile() {
        // Residuals with EᵀE/(n−1) = I₂ exactly: θ1 = 2, θ2 = 2, θ3 = 2, h0 = 1 − 2·2·2/(3·4) = 1/3 > 0.
        // JM is valid there; both methods must give a 99 % limit above the 95 % one.
        let e = ndarray::array![[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]] * (1.5f64).sqrt();
        let (q95, q99, method) = q_limits(&e).unwrap();
        assert_eq!(method, QMethod::JacksonMudholkar);
        assert!(q99 > q95 && q95 > 0.0);
        // χ²(2; 0.95) = 5.991: the exact Q quantile for two unit-variance residuals.
        assert!((q95 - 5.991).abs() < 0.6, "{q95}");
    }

    #[test]
    fn all_zero_residuals_are_refused() {
        let e = Array2::<f64>::zeros((5, 3));
        assert_eq!(q_limits(&e), Err(LimitError::NoResidual));
    }
}

//! PLS1 regression by NIPALS: fitting on centred data, and the inference kernel (prediction,
//! Hotelling T² and Q residual of one preprocessed spectrum).
//!
//! Conventions match scikit-learn's `PLSRegression(scale=False)`: weights W, loadings P, rotations
//! R = W(PᵀW)⁻¹, coefficients b = R·q, scores t = Rᵀx. T² uses the training score variances with
//! one degree of freedom removed (ddof = 1), and Q is the squared norm of x − P·t. This module does
//! no I/O and never panics on shapes: every matrix is checked when it is built.

use ndarray::{Array1, Array2, ArrayView1, Axis, Slice};

use super::preprocess::solve;

/// Most latent variables a model may have.
pub const MAX_COMPONENTS: usize = 30;

/// Why a PLS fit or a stored PLS section was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PlsError {
    /// Component count outside 1 … min(n − 1, p, [`MAX_COMPONENTS`]).
    #[error("{components} latent variables for {n} samples × {p} variables (at most {max})")]
    Components {
        /// Asked for.
        components: usize,
        /// Samples.
        n: usize,
        /// Variables.
        p: usize,
        /// The most allowed.
        max: usize,
    },
    /// Array sizes that do not agree.
    #[error("{what}: {got} values, expected {expected}")]
    Shape {
        /// Which array.
        what: &'static str,
        /// Expected length.
        expected: usize,
        /// Found.
        got: usize,
    },
    /// Data without variance in the direction of y (a zero weight vector or score).
    #[error("component {component}: degenerate (no covariance left between X and y)")]
    Degenerate {
        /// 1-based component.
        component: usize,
    },
    /// A non-finite or non-positive value where a positive one is required.
    #[error("{what} is not finite and positive")]
    NotPositive {
        /// Which value.
        what: &'static str,
    },
}

/// A fitted PLS1 model on centred data.
#[derive(Debug, Clone, PartialEq)]
pub struct PlsFit {
    /// Weights W (p × A).
    pub weights: Array2<f64>,
    /// X loadings P (p × A).
    pub loadings: Array2<f64>,
    /// y loadings q (A).
    pub y_loadings: Array1<f64>,
    /// Training scores T (n × A).
    pub scores: Array2<f64>,
}

/// The largest number of components `n` samples of `p` variables support.
pub fn max_components(n: usize, p: usize) -> usize {
    n.saturating_sub(1).min(p).min(MAX_COMPONENTS)
}

/// Fits `components` latent variables by NIPALS to centred `x` (n × p) and centred `y` (n).
#[expect(
    clippy::many_single_char_names,
    reason = "the notation of the PLS literature (X, y, w, t, p, q)"
)]
pub fn fit(x: &Array2<f64>, y: &Array1<f64>, components: usize) -> Result<PlsFit, PlsError> {
    let (n, p) = x.dim();
    let max = max_components(n, p);
    if components == 0 || components > max {
        return Err(PlsError::Components {
            components,
            n,
            p,
            max,
        });
    }
    if y.len() != n {
        return Err(PlsError::Shape {
            what: "y",
            expected: n,
            got: y.len(),
        });
    }
    let mut xk = x.clone();
    let mut yk = y.clone();
    let mut weights = Array2::zeros((p, components));
    let mut loadings = Array2::zeros((p, components));
    let mut scores = Array2::zeros((n, components));
    let mut y_loadings = Array1::zeros(components);
    for a in 0..components {
        let mut w = xk.t().dot(&yk);
        let norm = w.dot(&w).sqrt();
        if !(norm > 0.0 && norm.is_finite()) {
            return Err(PlsError::Degenerate { component: a + 1 });
        }
        w /= norm;
        let t = xk.dot(&w);
        let tt = t.dot(&t);
        if !(tt > 0.0 && tt.is_finite()) {
            return Err(PlsError::Degenerate { component: a + 1 });
        }
        let pl = xk.t().dot(&t) / tt;
        let q = yk.dot(&t) / tt;
        // Deflate: X ← X − t pᵀ, y ← y − q t.
        for (mut row, ti) in xk.axis_iter_mut(Axis(0)).zip(t.iter()) {
            row.scaled_add(-ti, &pl);
        }
        yk.scaled_add(-q, &t);
        weights.column_mut(a).assign(&w);
        loadings.column_mut(a).assign(&pl);
        scores.column_mut(a).assign(&t);
        if let Some(slot) = y_loadings.get_mut(a) {
            *slot = q;
        }
    }
    Ok(PlsFit {
        weights,
        loadings,
        y_loadings,
        scores,
    })
}

impl PlsFit {
    /// Rotations R = W(PᵀW)⁻¹ and coefficients b = R q for the first `components` latent
    /// variables (NIPALS components are nested, so any prefix is the smaller model).
    #[expect(
        clippy::many_single_char_names,
        reason = "the notation of the PLS literature (W, P, R, q)"
    )]
    pub fn rotations_and_coef(
        &self,
        components: usize,
    ) -> Result<(Array2<f64>, Array1<f64>), PlsError> {
        let (p, total) = self.weights.dim();
        if components == 0 || components > total {
            return Err(PlsError::Components {
                components,
                n: self.scores.nrows(),
                p,
                max: total,
            });
        }
        let w = self.weights.slice_axis(Axis(1), Slice::from(..components));
        let pl = self.loadings.slice_axis(Axis(1), Slice::from(..components));
        let ptw = pl.t().dot(&w);
        // Invert PᵀW column by column.
        let a = components;
        let mut inv = Array2::<f64>::zeros((a, a));
        for col in 0..a {
            let mut m: Vec<f64> = ptw.iter().copied().collect();
            let mut e = vec![0.0; a];
            if let Some(v) = e.get_mut(col) {
                *v = 1.0;
            }
            solve(&mut m, &mut e, a).ok_or(PlsError::Degenerate { component: col + 1 })?;
            inv.column_mut(col).assign(&Array1::from(e));
        }
        let r = w.dot(&inv);
        let q = self
            .y_loadings
            .slice_axis(Axis(0), Slice::from(..components));
        let coef = r.dot(&q);
        Ok((r, coef))
    }
}

/// Sample variance (ddof = 1) of each column.
pub fn column_variances(scores: &Array2<f64>) -> Array1<f64> {
    let n = scores.nrows() as f64;
    scores
        .columns()
        .into_iter()
        .map(|c| {
            let m = c.sum() / n;
            c.iter().map(|v| (v - m) * (v - m)).sum::<f64>() / (n - 1.0)
        })
        .collect()
}

/// What the kernel computes for one preprocessed spectrum (prediction still without `y_mean`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KernelOutput {
    /// x·b (add the training mean of y for the prediction).
    pub centred_prediction: f64,
    /// Hotelling T².
    pub t2: f64,
    /// Q residual (squared prediction error).
    pub q: f64,
}

/// The inference arrays of a model, shapes checked.
#[derive(Debug, Clone, PartialEq)]
pub struct PlsKernel {
    coef: Array1<f64>,
    rotations_t: Array2<f64>,
    loadings: Array2<f64>,
    inv_score_var: Array1<f64>,
}

impl PlsKernel {
    /// Builds a kernel from coefficients (p), rotations and loadings (p × A, row-major) and the
    /// score variances (A).
    pub fn new(
        coef: Vec<f64>,
        rotations: Vec<f64>,
        loadings: Vec<f64>,
        score_var: &[f64],
    ) -> Result<Self, PlsError> {
        let p = coef.len();
        let a = score_var.len();
        if a == 0 || a > MAX_COMPONENTS {
            return Err(PlsError::Components {
                components: a,
                n: 0,
                p,
                max: MAX_COMPONENTS,
            });
        }
        let shape = |what, v: &Vec<f64>| {
            if v.len() == p * a {
                Ok(())
            } else {
                Err(PlsError::Shape {
                    what,
                    expected: p * a,
                    got: v.len(),
                })
            }
        };
        shape("rotations", &rotations)?;
        shape("loadings", &loadings)?;
        if score_var.iter().any(|v| !(v.is_finite() && *v > 0.0)) {
            return Err(PlsError::NotPositive {
                what: "score variance",
            });
        }
        if coef
            .iter()
            .chain(&rotations)
            .chain(&loadings)
            .any(|v| !v.is_finite())
        {
            return Err(PlsError::NotPositive {
                what: "coefficient",
            });
        }
        let to_array = |what, v: Vec<f64>| {
            Array2::from_shape_vec((p, a), v).map_err(|_| PlsError::Shape {
                what,
                expected: p * a,
                got: 0,
            })
        };
        let rotations = to_array("rotations", rotations)?;
        Ok(PlsKernel {
            coef: Array1::from(coef),
            rotations_t: rotations.t().as_standard_layout().into_owned(),
            loadings: to_array("loadings", loadings)?,
            inv_score_var: score_var.iter().map(|v| 1.0 / v).collect(),
        })
    }

    /// Number of variables.
    pub fn variables(&self) -> usize {
        self.coef.len()
    }

    /// Number of latent variables.
    pub fn components(&self) -> usize {
        self.inv_score_var.len()
    }

    /// Prediction (centred), T² and Q of one centred, preprocessed spectrum. Returns `None` when
    /// `x` has the wrong length.
    pub fn evaluate(&self, x: &[f64]) -> Option<KernelOutput> {
        if x.len() != self.coef.len() {
            return None;
        }
        let xv = ArrayView1::from(x);
        let centred_prediction = self.coef.dot(&xv);
        let t = self.rotations_t.dot(&xv);
        let t2 = t
            .iter()
            .zip(&self.inv_score_var)
            .map(|(ti, iv)| ti * ti * iv)
            .sum();
        let mut q = 0.0;
        for (xi, prow) in x.iter().zip(self.loadings.rows()) {
            let e = xi - prow.dot(&t);
            q += e * e;
        }
        Some(KernelOutput {
            centred_prediction,
            t2,
            q,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn one_component_recovers_an_exact_linear_relation() {
        // y = 3·x1 on centred data lying in a one-dimensional subspace (x2 = 2·x1).
        let x = array![
            [-1.0, -2.0],
            [0.0, 0.0],
            [1.0, 2.0],
            [2.0, 4.0],
            [-2.0, -4.0]
        ];
        let y = x.column(0).to_owned() * 3.0;
        let fit = fit(&x, &y, 1).unwrap();
        let (_, coef) = fit.rotations_and_coef(1).unwrap();
        let pred = x.dot(&coef);
        for (a, b) in pred.iter().zip(y.iter()) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn refuses_too_many_components() {
        let x = Array2::<f64>::zeros((3, 5));
        let y = Array1::<f64>::zeros(3);
        assert!(matches!(
            fit(&x, &y, 3),
            Err(PlsError::Components { max: 2, .. })
        ));
    }

    #[test]
    fn kernel_refuses_wrong_length_and_bad_variances() {
        assert!(matches!(
            PlsKernel::new(vec![1.0, 2.0], vec![1.0, 0.0], vec![1.0, 0.0], &[0.0]),
            Err(PlsError::NotPositive { .. })
        ));
        let k = PlsKernel::new(vec![1.0, 2.0], vec![1.0, 0.0], vec![1.0, 0.0], &[2.0]).unwrap();
        assert!(k.evaluate(&[1.0]).is_none());
        let out = k.evaluate(&[1.0, 1.0]).unwrap();
        assert_eq!(out.centred_prediction, 3.0);
        assert_eq!(out.t2, 0.5);
        assert_eq!(out.q, 1.0);
    }
}

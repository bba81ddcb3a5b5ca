//! Spectral preprocessing, one implementation for training and inference: SNV, MSC,
//! Savitzky–Golay smoothing and derivatives (any odd window, any order below it, derivative up to
//! the order), range selection and mean-centring, applied as the ordered list a model file names.
//!
//! A [`Pipeline`] is compiled once from the list (Savitzky–Golay coefficients solved, lengths
//! checked against the axis) and then only multiplies and adds. Savitzky–Golay edges use the
//! "nearest" mode (the first and last points are repeated), the same as
//! `scipy.signal.savgol_filter(mode="nearest")`. Steps that learn from data (MSC's reference
//! spectrum, the centring mean) are fitted by [`fit_steps`] on the training spectra only. This
//! module does no I/O.

use serde::{Deserialize, Serialize};

/// Widest Savitzky–Golay window accepted.
pub const MAX_WINDOW: u16 = 501;

/// One preprocessing step as stored in a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Standard normal variate: subtract the spectrum's mean, divide by its standard deviation
    /// (with `ddof` degrees of freedom removed).
    Snv {
        /// Delta degrees of freedom of the standard deviation (1 = sample SD).
        ddof: u8,
    },
    /// Multiplicative scatter correction against a reference spectrum (the training mean).
    Msc {
        /// The reference spectrum.
        reference: Vec<f64>,
    },
    /// Savitzky–Golay filter: local polynomial of `order` over `window` points, derivative `deriv`
    /// (per point, unit spacing).
    Savgol {
        /// Derivative order (0 = smoothing).
        deriv: u8,
        /// Polynomial order.
        order: u8,
        /// Window length, odd.
        window: u16,
    },
    /// Keeps the points `start..end` (indices into the current vector).
    Select {
        /// One past the last index kept.
        end: u32,
        /// First index kept.
        start: u32,
    },
    /// Subtracts the training mean.
    Centre {
        /// The mean of the training spectra after the preceding steps.
        mean: Vec<f64>,
    },
}

/// A step as a person names it in a training specification, before fitting.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub enum StepSpec {
    /// SNV with sample SD.
    Snv,
    /// MSC against the training mean.
    Msc,
    /// Savitzky–Golay.
    Savgol {
        /// Window length, odd.
        window: u16,
        /// Polynomial order.
        order: u8,
        /// Derivative order.
        deriv: u8,
    },
    /// Keep the points whose axis value lies in `from ..= to` (axis units, either order).
    Range {
        /// One end.
        from: f64,
        /// The other end.
        to: f64,
    },
    /// Mean-centring (must be last).
    Centre,
}

/// Why a preprocessing list was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PreprocessError {
    /// A Savitzky–Golay window that is even, too short or too long for the data.
    #[error(
        "step {step}: Savitzky–Golay window {window} (order {order}, deriv {deriv}) is invalid for {len} points"
    )]
    BadSavgol {
        /// Index of the step.
        step: usize,
        /// Window.
        window: u16,
        /// Polynomial order.
        order: u8,
        /// Derivative.
        deriv: u8,
        /// Points at that step.
        len: usize,
    },
    /// A fitted vector (MSC reference, mean) of the wrong length.
    #[error("step {step}: vector of {got} values for {expected} points")]
    Length {
        /// Index of the step.
        step: usize,
        /// Points at that step.
        expected: usize,
        /// Values stored.
        got: usize,
    },
    /// A selection outside the current vector or empty.
    #[error("step {step}: selection {start}..{end} is outside 0..{len} or too short")]
    BadSelection {
        /// Index of the step.
        step: usize,
        /// Start.
        start: u32,
        /// End.
        end: u32,
        /// Points at that step.
        len: usize,
    },
    /// A range that holds fewer than two axis points.
    #[error("step {step}: range {from} … {to} holds fewer than two axis points")]
    EmptyRange {
        /// Index of the step.
        step: usize,
        /// One end.
        from: f64,
        /// The other end.
        to: f64,
    },
    /// `ddof` other than 0 or 1.
    #[error("step {step}: SNV ddof {ddof} is not 0 or 1")]
    BadDdof {
        /// Index of the step.
        step: usize,
        /// The value.
        ddof: u8,
    },
    /// Centring must be the last step, exactly once.
    #[error("mean-centring must be the last step, exactly once")]
    CentreNotLast,
    /// A stored value is not finite.
    #[error("step {step}: non-finite value")]
    NotFinite {
        /// Index of the step.
        step: usize,
    },
    /// Too few training spectra to fit.
    #[error("no training spectra to fit the preprocessing on")]
    NoData,
}

#[derive(Debug, Clone, PartialEq)]
enum Compiled {
    Snv {
        ddof: f64,
    },
    Msc {
        reference: Vec<f64>,
        ref_mean: f64,
        ref_ss: f64,
    },
    Filter {
        coeffs: Vec<f64>,
        half: usize,
    },
    Select {
        start: usize,
        end: usize,
    },
    Centre {
        mean: Vec<f64>,
    },
}

/// A compiled preprocessing list for a fixed input length.
#[derive(Debug, Clone, PartialEq)]
pub struct Pipeline {
    steps: Vec<Compiled>,
    input_len: usize,
    output_len: usize,
}

/// Solves `a·x = b` in place (`a` is n×n row-major) by Gaussian elimination with partial pivoting.
/// Returns `None` when `a` is singular.
pub(crate) fn solve(a: &mut [f64], b: &mut [f64], n: usize) -> Option<()> {
    for col in 0..n {
        let pivot = (col..n).max_by(|&i, &j| {
            let ai = a.get(i * n + col).copied().unwrap_or(0.0).abs();
            let aj = a.get(j * n + col).copied().unwrap_or(0.0).abs();
            ai.total_cmp(&aj)
        })?;
        let pv = a.get(pivot * n + col).copied()?;
        if pv.abs() < 1e-300 {
            return None;
        }
        if pivot != col {
            for k in 0..n {
                a.swap(pivot * n + k, col * n + k);
            }
            b.swap(pivot, col);
        }
        for row in (col + 1)..n {
            let factor = a.get(row * n + col).copied()? / pv;
            if factor == 0.0 {
                continue;
            }
            for k in col..n {
                let v = a.get(col * n + k).copied()?;
                *a.get_mut(row * n + k)? -= factor * v;
            }
            let bv = b.get(col).copied()?;
            *b.get_mut(row)? -= factor * bv;
        }
    }
    for row in (0..n).rev() {
        let mut s = b.get(row).copied()?;
        for k in (row + 1)..n {
            s -= a.get(row * n + k).copied()? * b.get(k).copied()?;
        }
        *b.get_mut(row)? = s / a.get(row * n + row).copied()?;
    }
    Some(())
}

/// Savitzky–Golay correlation coefficients: `out[i] = Σ_j c[j]·x[i + j − half]`.
pub fn savgol_coefficients(window: u16, order: u8, deriv: u8) -> Option<Vec<f64>> {
    if window.is_multiple_of(2)
        || window > MAX_WINDOW
        || u16::from(order) >= window
        || deriv > order
    {
        return None;
    }
    let half = i32::from(window / 2);
    let m = usize::from(order) + 1;
    // Normal equations (AᵀA) a = Aᵀ e_j, A[j][k] = j^k; we need row `deriv` of (AᵀA)⁻¹Aᵀ, i.e.
    // solve (AᵀA) z = e_deriv, then c_j = deriv! · Σ_k z_k j^k.
    let mut ata = vec![0.0; m * m];
    for j in -half..=half {
        let jf = f64::from(j);
        for r in 0..m {
            for c in 0..m {
                let e = i32::try_from(r + c).ok()?;
                *ata.get_mut(r * m + c)? += jf.powi(e);
            }
        }
    }
    let mut z = vec![0.0; m];
    *z.get_mut(usize::from(deriv))? = 1.0;
    solve(&mut ata, &mut z, m)?;
    let factorial: f64 = (1..=u32::from(deriv)).map(f64::from).product();
    let coeffs = (-half..=half)
        .map(|j| {
            let jf = f64::from(j);
            let mut s = 0.0;
            let mut power = 1.0;
            for zk in &z {
                s += zk * power;
                power *= jf;
            }
            s * factorial
        })
        .collect();
    Some(coeffs)
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

impl Pipeline {
    /// Compiles `steps` for spectra of `input_len` points.
    pub fn compile(steps: &[Step], input_len: usize) -> Result<Self, PreprocessError> {
        let mut len = input_len;
        let mut compiled = Vec::with_capacity(steps.len());
        let centre_positions: Vec<usize> = steps
            .iter()
            .enumerate()
            .filter(|(_, s)| matches!(s, Step::Centre { .. }))
            .map(|(i, _)| i)
            .collect();
        if centre_positions != [steps.len().saturating_sub(1)] {
            return Err(PreprocessError::CentreNotLast);
        }
        for (i, step) in steps.iter().enumerate() {
            let c = match step {
                Step::Snv { ddof } => {
                    if *ddof > 1 || len <= usize::from(*ddof) {
                        return Err(PreprocessError::BadDdof {
                            step: i,
                            ddof: *ddof,
                        });
                    }
                    Compiled::Snv {
                        ddof: f64::from(*ddof),
                    }
                }
                Step::Msc { reference } => {
                    if reference.len() != len {
                        return Err(PreprocessError::Length {
                            step: i,
                            expected: len,
                            got: reference.len(),
                        });
                    }
                    if reference.iter().any(|v| !v.is_finite()) {
                        return Err(PreprocessError::NotFinite { step: i });
                    }
                    let ref_mean = mean(reference);
                    let ref_ss = reference.iter().map(|r| (r - ref_mean).powi(2)).sum();
                    Compiled::Msc {
                        reference: reference.clone(),
                        ref_mean,
                        ref_ss,
                    }
                }
                Step::Savgol {
                    deriv,
                    order,
                    window,
                } => {
                    let bad = PreprocessError::BadSavgol {
                        step: i,
                        window: *window,
                        order: *order,
                        deriv: *deriv,
                        len,
                    };
                    if usize::from(*window) > len {
                        return Err(bad);
                    }
                    let coeffs = savgol_coefficients(*window, *order, *deriv).ok_or(bad)?;
                    Compiled::Filter {
                        coeffs,
                        half: usize::from(*window / 2),
                    }
                }
                Step::Select { start, end } => {
                    let (s, e) = (*start as usize, *end as usize);
                    if s + 2 > e || e > len {
                        return Err(PreprocessError::BadSelection {
                            step: i,
                            start: *start,
                            end: *end,
                            len,
                        });
                    }
                    len = e - s;
                    Compiled::Select { start: s, end: e }
                }
                Step::Centre { mean } => {
                    if mean.len() != len {
                        return Err(PreprocessError::Length {
                            step: i,
                            expected: len,
                            got: mean.len(),
                        });
                    }
                    if mean.iter().any(|v| !v.is_finite()) {
                        return Err(PreprocessError::NotFinite { step: i });
                    }
                    Compiled::Centre { mean: mean.clone() }
                }
            };
            compiled.push(c);
        }
        Ok(Pipeline {
            steps: compiled,
            input_len,
            output_len: len,
        })
    }

    /// Length of the input spectra.
    pub fn input_len(&self) -> usize {
        self.input_len
    }

    /// Length of the preprocessed vector.
    pub fn output_len(&self) -> usize {
        self.output_len
    }

    /// Applies the pipeline to `x` (of [`Pipeline::input_len`] points) into `out`, using
    /// `scratch` as working space; both are resized as needed and can be reused across calls.
    pub fn apply_into(&self, x: &[f64], out: &mut Vec<f64>, scratch: &mut Vec<f64>) {
        out.clear();
        out.extend_from_slice(x);
        for step in &self.steps {
            apply_step(step, out, scratch);
        }
    }

    /// Applies the pipeline to `x`, allocating the result.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let mut out = Vec::with_capacity(x.len());
        let mut scratch = Vec::with_capacity(x.len());
        self.apply_into(x, &mut out, &mut scratch);
        out
    }
}

fn apply_step(step: &Compiled, v: &mut Vec<f64>, scratch: &mut Vec<f64>) {
    match step {
        Compiled::Snv { ddof } => {
            let m = mean(v);
            let ss: f64 = v.iter().map(|x| (x - m) * (x - m)).sum();
            let sd = (ss / (v.len() as f64 - ddof)).sqrt();
            // A flat spectrum has no scatter to correct; leave it centred rather than divide by 0.
            let inv = if sd > 0.0 { 1.0 / sd } else { 1.0 };
            for x in v.iter_mut() {
                *x = (*x - m) * inv;
            }
        }
        Compiled::Msc {
            reference,
            ref_mean,
            ref_ss,
        } => {
            let m = mean(v);
            let sxy: f64 = v
                .iter()
                .zip(reference)
                .map(|(x, r)| (x - m) * (r - ref_mean))
                .sum();
            let slope = if *ref_ss > 0.0 { sxy / ref_ss } else { 1.0 };
            let slope = if slope == 0.0 { 1.0 } else { slope };
            let intercept = m - slope * ref_mean;
            for x in v.iter_mut() {
                *x = (*x - intercept) / slope;
            }
        }
        Compiled::Filter { coeffs, half } => {
            let n = v.len();
            scratch.clear();
            scratch.resize(n, 0.0);
            let last = n.saturating_sub(1);
            for (i, out) in scratch.iter_mut().enumerate() {
                let mut s = 0.0;
                if i >= *half && i + half < n {
                    if let Some(window) = v.get(i - half..=i + half) {
                        for (c, x) in coeffs.iter().zip(window) {
                            s += c * x;
                        }
                    }
                } else {
                    for (k, c) in coeffs.iter().enumerate() {
                        let j = (i + k).saturating_sub(*half).min(last);
                        let j = if i + k < *half { 0 } else { j };
                        s += c * v.get(j).copied().unwrap_or(0.0);
                    }
                }
                *out = s;
            }
            std::mem::swap(v, scratch);
        }
        Compiled::Select { start, end } => {
            v.truncate(*end);
            v.drain(..*start);
        }
        Compiled::Centre { mean } => {
            for (x, m) in v.iter_mut().zip(mean) {
                *x -= m;
            }
        }
    }
}

/// Fits a specification on training spectra (rows of equal length on `axis`): resolves ranges to
/// index selections and learns the MSC reference and the centring mean from `rows` only.
pub fn fit_steps(
    specs: &[StepSpec],
    axis: &[f64],
    rows: &[&[f64]],
) -> Result<Vec<Step>, PreprocessError> {
    if rows.is_empty() {
        return Err(PreprocessError::NoData);
    }
    let mut steps = Vec::with_capacity(specs.len());
    let mut current_axis: Vec<f64> = axis.to_vec();
    for (i, spec) in specs.iter().enumerate() {
        let step = match spec {
            StepSpec::Snv => Step::Snv { ddof: 1 },
            StepSpec::Savgol {
                window,
                order,
                deriv,
            } => Step::Savgol {
                deriv: *deriv,
                order: *order,
                window: *window,
            },
            StepSpec::Range { from, to } => {
                let (lo, hi) = if from <= to {
                    (*from, *to)
                } else {
                    (*to, *from)
                };
                let inside: Vec<usize> = current_axis
                    .iter()
                    .enumerate()
                    .filter(|(_, a)| (lo..=hi).contains(*a))
                    .map(|(k, _)| k)
                    .collect();
                let (Some(&s), Some(&e)) = (inside.first(), inside.last()) else {
                    return Err(PreprocessError::EmptyRange {
                        step: i,
                        from: *from,
                        to: *to,
                    });
                };
                if e <= s {
                    return Err(PreprocessError::EmptyRange {
                        step: i,
                        from: *from,
                        to: *to,
                    });
                }
                current_axis = current_axis
                    .get(s..=e)
                    .map(<[f64]>::to_vec)
                    .unwrap_or_default();
                let start = u32::try_from(s).map_err(|_| PreprocessError::NoData)?;
                let end = u32::try_from(e + 1).map_err(|_| PreprocessError::NoData)?;
                Step::Select { end, start }
            }
            StepSpec::Msc | StepSpec::Centre => {
                // Learn from the training rows passed through the steps fitted so far.
                let partial = Pipeline::compile_partial(&steps, axis.len())?;
                let mut acc = vec![0.0; partial.output_len];
                for row in rows {
                    let y = partial.apply(row);
                    for (a, v) in acc.iter_mut().zip(&y) {
                        *a += v;
                    }
                }
                let n = rows.len() as f64;
                let m: Vec<f64> = acc.into_iter().map(|a| a / n).collect();
                if matches!(spec, StepSpec::Msc) {
                    Step::Msc { reference: m }
                } else {
                    Step::Centre { mean: m }
                }
            }
        };
        steps.push(step);
    }
    Pipeline::compile(&steps, axis.len())?;
    Ok(steps)
}

impl Pipeline {
    /// Compiles a prefix of a list (no centring required), used while fitting.
    fn compile_partial(steps: &[Step], input_len: usize) -> Result<Self, PreprocessError> {
        let mut with_centre = steps.to_vec();
        // Compile with a dummy zero centring of the right length, then drop it.
        let probe = Pipeline::compile_prefix_len(steps, input_len)?;
        with_centre.push(Step::Centre {
            mean: vec![0.0; probe],
        });
        let mut p = Pipeline::compile(&with_centre, input_len)?;
        p.steps.pop();
        Ok(p)
    }

    fn compile_prefix_len(steps: &[Step], input_len: usize) -> Result<usize, PreprocessError> {
        let mut len = input_len;
        for (i, s) in steps.iter().enumerate() {
            if let Step::Select { start, end } = s {
                let (st, en) = (*start as usize, *end as usize);
                if st + 2 > en || en > len {
                    return Err(PreprocessError::BadSelection {
                        step: i,
                        start: *start,
                        end: *end,
                        len,
                    });
                }
                len = en - st;
            }
        }
        Ok(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn savgol_coefficients_match_the_published_tables() {
        // Savitzky & Golay (1964), 5-point quadratic smoothing: (-3, 12, 17, 12, -3)/35.
        let c = savgol_coefficients(5, 2, 0).unwrap();
        for (got, want) in c.iter().zip([-3.0, 12.0, 17.0, 12.0, -3.0]) {
            assert!((got - want / 35.0).abs() < 1e-14);
        }
        // First derivative, 5 points, quadratic: (-2, -1, 0, 1, 2)/10.
        let d = savgol_coefficients(5, 2, 1).unwrap();
        for (got, want) in d.iter().zip([-2.0, -1.0, 0.0, 1.0, 2.0]) {
            assert!((got - want / 10.0).abs() < 1e-14);
        }
        assert!(savgol_coefficients(4, 2, 0).is_none());
        assert!(savgol_coefficients(5, 5, 0).is_none());
        assert!(savgol_coefficients(5, 2, 3).is_none());
    }

    #[test]
    fn derivative_of_a_line_is_its_slope_even_at_the_edges_inside() {
        let x: Vec<f64> = (0..20).map(|i| 3.0 + 2.0 * f64::from(i)).collect();
        let p = Pipeline::compile(
            &[
                Step::Savgol {
                    deriv: 1,
                    order: 2,
                    window: 7,
                },
                Step::Centre {
                    mean: vec![0.0; 20],
                },
            ],
            20,
        )
        .unwrap();
        let y = p.apply(&x);
        for v in &y[3..17] {
            assert!((v - 2.0).abs() < 1e-12);
        }
    }

    #[test]
    fn snv_gives_zero_mean_unit_sd_and_msc_removes_gain_and_offset() {
        let x = [1.0, 2.0, 4.0, 8.0];
        let p = Pipeline::compile(
            &[Step::Snv { ddof: 1 }, Step::Centre { mean: vec![0.0; 4] }],
            4,
        )
        .unwrap();
        let y = p.apply(&x);
        let m: f64 = y.iter().sum::<f64>() / 4.0;
        let sd = (y.iter().map(|v| (v - m).powi(2)).sum::<f64>() / 3.0).sqrt();
        assert!(m.abs() < 1e-15 && (sd - 1.0).abs() < 1e-14);

        let reference = vec![1.0, 2.0, 4.0, 8.0];
        let scaled: Vec<f64> = reference.iter().map(|r| 0.5 + 3.0 * r).collect();
        let p = Pipeline::compile(
            &[
                Step::Msc {
                    reference: reference.clone(),
                },
                Step::Centre { mean: vec![0.0; 4] },
            ],
            4,
        )
        .unwrap();
        for (a, b) in p.apply(&scaled).iter().zip(&reference) {
            assert!((a - b).abs() < 1e-12);
        }
    }

    #[test]
    fn centring_must_be_last_and_lengths_must_agree() {
        assert_eq!(
            Pipeline::compile(&[Step::Snv { ddof: 1 }], 4),
            Err(PreprocessError::CentreNotLast)
        );
        assert_eq!(
            Pipeline::compile(&[Step::Centre { mean: vec![0.0; 3] }], 4),
            Err(PreprocessError::Length {
                step: 0,
                expected: 4,
                got: 3
            })
        );
        assert!(matches!(
            Pipeline::compile(
                &[
                    Step::Savgol {
                        deriv: 0,
                        order: 2,
                        window: 9
                    },
                    Step::Centre { mean: vec![0.0; 5] }
                ],
                5
            ),
            Err(PreprocessError::BadSavgol { .. })
        ));
    }

    #[test]
    fn range_is_fitted_to_indices_and_centre_to_the_training_mean() {
        let axis = [10.0, 11.0, 12.0, 13.0, 14.0];
        let r1 = [1.0, 2.0, 3.0, 4.0, 5.0];
        let r2 = [3.0, 4.0, 5.0, 6.0, 7.0];
        let steps = fit_steps(
            &[
                StepSpec::Range {
                    from: 13.5,
                    to: 11.0,
                },
                StepSpec::Centre,
            ],
            &axis,
            &[&r1, &r2],
        )
        .unwrap();
        assert_eq!(steps[0], Step::Select { end: 4, start: 1 });
        assert_eq!(
            steps[1],
            Step::Centre {
                mean: vec![3.0, 4.0, 5.0]
            }
        );
    }
}

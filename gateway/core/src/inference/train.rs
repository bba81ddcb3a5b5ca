//! Training a PLS model file from calibration spectra: preprocessing fitted per fold,
//! leave-group-out (e.g. leave-batch-out) and interleaved k-fold cross-validation, the choice of
//! latent variables (the fewest within 2 % of the lowest RMSECV, unless fixed), the final fit,
//! T²/Q limits and reference cases.
//!
//! It is pure computation, so it lives in the core beside inference and shares the very same
//! preprocessing code; the hub tool (`dosegate-hub model train`) reads the files and writes the
//! result. No I/O here.

use std::collections::BTreeMap;

use ndarray::{Array1, Array2};
use serde::{Deserialize, Serialize};

use super::limits::{self, LimitError};
use super::model::{
    AxisSection, CvPoint, FORMAT_VERSION, Limits, ModelError, ModelFile, PlsSection, Quantity,
    ReferenceCase, Training, ValidatedModel,
};
use super::pls::{self, PlsError, PlsKernel};
use super::preprocess::{Pipeline, PreprocessError, StepSpec, fit_steps};
use crate::spectrum::Axis;

/// A training specification, as kept beside each model in `models/specs/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainingSpec {
    /// Model id.
    pub id: String,
    /// Model version.
    pub version: u32,
    /// What the reference column holds.
    pub quantity: Quantity,
    /// Ordered preprocessing (must end with `centre`).
    pub preprocessing: Vec<StepSpec>,
    /// Metadata column whose values form the groups of leave-group-out CV (e.g. `batch`).
    #[serde(default)]
    pub group_by: Option<String>,
    /// Folds of the interleaved k-fold CV.
    #[serde(default = "default_folds")]
    pub folds: u32,
    /// Most latent variables tried.
    pub max_lv: u32,
    /// Use exactly this many latent variables instead of choosing by CV.
    #[serde(default)]
    pub lv: Option<u32>,
    /// Axis tolerance as a fraction of the mean axis step.
    #[serde(default = "default_axis_tolerance")]
    pub axis_tolerance_steps: f64,
}

fn default_folds() -> u32 {
    10
}

fn default_axis_tolerance() -> f64 {
    0.05
}

/// Calibration data handed to [`train`].
#[derive(Debug, Clone)]
pub struct CalibrationSet<'a> {
    /// The axis.
    pub axis: &'a Axis,
    /// Raw spectra.
    pub rows: Vec<&'a [f64]>,
    /// Reference values.
    pub y: Vec<f64>,
    /// Group label per row (for leave-group-out CV).
    pub groups: Option<Vec<String>>,
    /// Name of the reference column.
    pub reference: String,
    /// File name of the source.
    pub source: String,
    /// SHA-256 of the source bytes, hex.
    pub data_sha256: String,
    /// Program name and version recorded as the trainer.
    pub trainer: String,
}

/// Why training failed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TrainError {
    /// Rows, references and groups disagree in number, or too few rows.
    #[error("{rows} spectra, {references} references: need equal counts and at least 5")]
    Size {
        /// Spectra.
        rows: usize,
        /// References.
        references: usize,
    },
    /// Fewer than two folds or groups.
    #[error("cross-validation needs at least 2 folds or groups, got {0}")]
    Folds(usize),
    /// A reference value is not finite.
    #[error("reference value of row {0} is not finite")]
    Reference(usize),
    /// Preprocessing failed.
    #[error(transparent)]
    Preprocess(#[from] PreprocessError),
    /// PLS failed.
    #[error(transparent)]
    Pls(#[from] PlsError),
    /// Limits failed.
    #[error(transparent)]
    Limits(#[from] LimitError),
    /// The model produced does not validate.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The outcome: the model file bytes and what was learned on the way.
#[derive(Debug, Clone)]
pub struct TrainedModel {
    /// The encoded model file.
    pub bytes: Vec<u8>,
    /// The same, validated.
    pub model: ValidatedModel,
    /// Cross-validated predictions at the chosen LV count (grouped CV when groups were given).
    pub cv_predictions: Vec<f64>,
}

fn matrix(rows: &[Vec<f64>]) -> Array2<f64> {
    let p = rows.first().map_or(0, Vec::len);
    let mut m = Array2::zeros((rows.len(), p));
    for (mut dst, src) in m.rows_mut().into_iter().zip(rows) {
        dst.assign(&ndarray::ArrayView1::from(src.as_slice()));
    }
    m
}

/// Cross-validated predictions for 1..=`max_lv` latent variables; `fold_of[i]` is row i's fold.
/// Entry `[a-1][i]` is row i's prediction with a latent variables (NaN when a fold could not fit
/// that many).
pub fn cross_validate(
    specs: &[StepSpec],
    set: &CalibrationSet<'_>,
    fold_of: &[usize],
    max_lv: usize,
) -> Result<Vec<Vec<f64>>, TrainError> {
    let n = set.rows.len();
    let folds = fold_of.iter().copied().max().map_or(0, |m| m + 1);
    let mut preds = vec![vec![f64::NAN; n]; max_lv];
    for fold in 0..folds {
        let train_idx: Vec<usize> = (0..n).filter(|&i| fold_of.get(i) != Some(&fold)).collect();
        let test_idx: Vec<usize> = (0..n).filter(|&i| fold_of.get(i) == Some(&fold)).collect();
        if test_idx.is_empty() {
            continue;
        }
        let train_rows: Vec<&[f64]> = train_idx
            .iter()
            .filter_map(|&i| set.rows.get(i).copied())
            .collect();
        let steps = fit_steps(specs, set.axis.values(), &train_rows)?;
        let pipeline = Pipeline::compile(&steps, set.axis.len())?;
        let x = matrix(
            &train_rows
                .iter()
                .map(|r| pipeline.apply(r))
                .collect::<Vec<_>>(),
        );
        let ytr: Vec<f64> = train_idx
            .iter()
            .filter_map(|&i| set.y.get(i).copied())
            .collect();
        let y_mean = ytr.iter().sum::<f64>() / ytr.len() as f64;
        let yc = Array1::from(ytr.iter().map(|v| v - y_mean).collect::<Vec<_>>());
        let a_max = max_lv.min(pls::max_components(x.nrows(), x.ncols()));
        let fit = pls::fit(&x, &yc, a_max)?;
        let test_x: Vec<Vec<f64>> = test_idx
            .iter()
            .filter_map(|&i| set.rows.get(i).map(|r| pipeline.apply(r)))
            .collect();
        let xt = matrix(&test_x);
        for a in 1..=a_max {
            let (_, coef) = fit.rotations_and_coef(a)?;
            let yhat = xt.dot(&coef);
            if let Some(row) = preds.get_mut(a - 1) {
                for (&i, v) in test_idx.iter().zip(yhat.iter()) {
                    if let Some(slot) = row.get_mut(i) {
                        *slot = y_mean + v;
                    }
                }
            }
        }
    }
    Ok(preds)
}

/// Root mean square error of `pred` against `y` (NaN if any prediction is missing).
pub fn rmse(pred: &[f64], y: &[f64]) -> f64 {
    let n = y.len() as f64;
    (pred
        .iter()
        .zip(y)
        .map(|(p, t)| (p - t) * (p - t))
        .sum::<f64>()
        / n)
        .sqrt()
}

/// Mean of `pred − y`.
pub fn bias(pred: &[f64], y: &[f64]) -> f64 {
    pred.iter().zip(y).map(|(p, t)| p - t).sum::<f64>() / y.len() as f64
}

/// Pearson correlation.
pub fn correlation(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len() as f64;
    let (ma, mb) = (a.iter().sum::<f64>() / n, b.iter().sum::<f64>() / n);
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    sab / (saa * sbb).sqrt()
}

/// Fold index per row from group labels (in order of first appearance).
pub fn group_folds(groups: &[String]) -> Vec<usize> {
    let mut seen: BTreeMap<&str, usize> = BTreeMap::new();
    let mut next = 0;
    groups
        .iter()
        .map(|g| {
            *seen.entry(g.as_str()).or_insert_with(|| {
                next += 1;
                next - 1
            })
        })
        .collect()
}

/// Trains a model file.
#[expect(
    clippy::many_single_char_names,
    clippy::too_many_lines,
    reason = "one linear recipe in the notation of the PLS literature; splitting it would scatter the steps"
)]
pub fn train(spec: &TrainingSpec, set: &CalibrationSet<'_>) -> Result<TrainedModel, TrainError> {
    let n = set.rows.len();
    if n != set.y.len() || n < 5 || set.groups.as_ref().is_some_and(|g| g.len() != n) {
        return Err(TrainError::Size {
            rows: n,
            references: set.y.len(),
        });
    }
    if let Some(i) = set.y.iter().position(|v| !v.is_finite()) {
        return Err(TrainError::Reference(i));
    }
    let k = spec.folds as usize;
    if k < 2 {
        return Err(TrainError::Folds(k));
    }
    let kfold: Vec<usize> = (0..n).map(|i| i % k).collect();
    let grouped = set.groups.as_deref().map(group_folds);
    if let Some(g) = &grouped {
        let count = g.iter().max().map_or(0, |m| m + 1);
        if count < 2 {
            return Err(TrainError::Folds(count));
        }
    }
    let max_lv = (spec.max_lv as usize).max(1);
    let cv_kfold = cross_validate(&spec.preprocessing, set, &kfold, max_lv)?;
    let cv_primary = match &grouped {
        Some(g) => cross_validate(&spec.preprocessing, set, g, max_lv)?,
        None => cv_kfold.clone(),
    };
    let mut cv = Vec::new();
    for (a, (pg, pk)) in cv_primary.iter().zip(&cv_kfold).enumerate() {
        let (e1, e2) = (rmse(pg, &set.y), rmse(pk, &set.y));
        if e1.is_finite() && e2.is_finite() {
            cv.push(CvPoint {
                lv: u32::try_from(a + 1).unwrap_or(u32::MAX),
                rmsecv: e1,
                rmsecv_kfold: e2,
            });
        }
    }
    let best = cv.iter().map(|c| c.rmsecv).fold(f64::INFINITY, f64::min);
    let chosen = match spec.lv {
        Some(lv) => lv as usize,
        None => cv
            .iter()
            .find(|c| c.rmsecv <= best * 1.02)
            .map_or(1, |c| c.lv as usize),
    };
    let cv_predictions = cv_primary
        .get(chosen.saturating_sub(1))
        .cloned()
        .unwrap_or_default();

    // Final fit on all calibration spectra.
    let steps = fit_steps(&spec.preprocessing, set.axis.values(), &set.rows)?;
    let pipeline = Pipeline::compile(&steps, set.axis.len())?;
    let x = matrix(
        &set.rows
            .iter()
            .map(|r| pipeline.apply(r))
            .collect::<Vec<_>>(),
    );
    let y_mean = set.y.iter().sum::<f64>() / n as f64;
    let yc = Array1::from(set.y.iter().map(|v| v - y_mean).collect::<Vec<_>>());
    let fit = pls::fit(&x, &yc, chosen)?;
    let (rotations, coef) = fit.rotations_and_coef(chosen)?;
    let scores = x.dot(&rotations);
    let score_var = pls::column_variances(&scores);
    let residuals = &x - &scores.dot(&fit.loadings.t());
    let (q95, q99, q_method) = limits::q_limits(&residuals)?;
    let limits = Limits {
        q95,
        q99,
        t2_95: limits::t2_limit(n, chosen, 0.95)?,
        t2_99: limits::t2_limit(n, chosen, 0.99)?,
        q_method,
    };
    let fitted: Vec<f64> = x.dot(&coef).iter().map(|v| v + y_mean).collect();
    let mean_step = set.axis.values().windows(2).filter_map(|w| match w {
        [a, b] => Some((b - a).abs()),
        _ => None,
    });
    let mean_step = mean_step.sum::<f64>() / (set.axis.len() - 1) as f64;

    let rotations_v: Vec<f64> = rotations.iter().copied().collect();
    let loadings_v: Vec<f64> = fit.loadings.iter().copied().collect();
    let kernel = PlsKernel::new(
        coef.to_vec(),
        rotations_v.clone(),
        loadings_v.clone(),
        score_var.as_slice().unwrap_or(&[]),
    )?;
    let mut reference_cases = Vec::new();
    let mut picks = vec![0, n / 2, n - 1];
    picks.dedup();
    for i in picks {
        let Some(raw) = set.rows.get(i) else { continue };
        let xp = pipeline.apply(raw);
        if let Some(k) = kernel.evaluate(&xp) {
            reference_cases.push(ReferenceCase {
                q: k.q,
                t2: k.t2,
                spectrum: raw.to_vec(),
                prediction: y_mean + k.centred_prediction,
            });
        }
    }
    let file = ModelFile {
        id: spec.id.clone(),
        pls: PlsSection {
            coef: coef.to_vec(),
            y_mean,
            loadings: loadings_v,
            rotations: rotations_v,
            score_var: score_var.to_vec(),
        },
        axis: AxisSection {
            unit: set.axis.unit(),
            values: set.axis.values().to_vec(),
            tolerance: mean_step * spec.axis_tolerance_steps,
        },
        format: FORMAT_VERSION,
        limits,
        version: spec.version,
        quantity: spec.quantity,
        training: Training {
            n: u32::try_from(n).unwrap_or(u32::MAX),
            cv,
            bias: bias(&cv_predictions, &set.y),
            data: set.data_sha256.clone(),
            folds: spec.folds,
            rmsec: rmse(&fitted, &set.y),
            source: set.source.clone(),
            trainer: set.trainer.clone(),
            group_by: spec.group_by.clone(),
            reference: set.reference.clone(),
        },
        preprocessing: steps,
        reference_cases,
    };
    let bytes = ValidatedModel::encode(&file)?;
    let model = ValidatedModel::from_bytes(&bytes)?;
    Ok(TrainedModel {
        bytes,
        model,
        cv_predictions,
    })
}

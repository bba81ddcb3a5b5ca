//! The PAT model file and the validated model that runs it.
//!
//! A model file is one deterministic CBOR map ([`ModelFile`]): format version, id and version,
//! the axis it was trained on (unit, values, tolerance), the ordered preprocessing, the PLS arrays,
//! the T²/Q limits with their method, the training metadata and a few reference cases (raw
//! spectrum → prediction, T², Q). Its SHA-256 is the model's identity ([`ModelId`]); those bytes
//! are what the hub signs for distribution. [`ValidatedModel::from_bytes`] decodes with a size cap,
//! checks every shape, compiles the preprocessing and re-computes every reference case to 1e-9
//! relative before it returns — a model that does not reproduce its own cases never runs.
//! [`ValidatedModel::predict`] refuses a spectrum on a different axis and returns a [`Prediction`]
//! whose fields only this module can set. This module does no I/O.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::limits::QMethod;
use super::pls::{PlsError, PlsKernel};
use super::preprocess::{Pipeline, PreprocessError, Step};
use crate::cbor::{self, CborError};
use crate::spectrum::{Axis, AxisMismatch, AxisUnit, Spectrum, SpectrumError};

/// Largest model file accepted, bytes.
pub const MAX_MODEL_BYTES: usize = 32 << 20;
/// The model file format this code reads and writes.
pub const FORMAT_VERSION: u32 = 1;
/// Relative agreement required of reference cases when a model loads.
pub const REFERENCE_TOLERANCE: f64 = 1e-9;
/// Most reference cases in one file.
pub const MAX_REFERENCE_CASES: usize = 16;

/// What the model predicts, and therefore how a prediction becomes a dose.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Quantity {
    /// Drug content, % w/w: the dose is content × unit mass.
    ContentPctWw,
    /// Drug amount per unit, mg: the dose directly.
    AmountMg,
}

impl Quantity {
    /// Unit label.
    pub fn unit(self) -> &'static str {
        match self {
            Quantity::ContentPctWw => "% w/w",
            Quantity::AmountMg => "mg",
        }
    }
}

/// The axis section of a model file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AxisSection {
    /// Unit.
    pub unit: AxisUnit,
    /// Axis values.
    pub values: Vec<f64>,
    /// Largest accepted difference per point, axis units.
    pub tolerance: f64,
}

/// The PLS section: arrays on the preprocessed (centred) variables.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlsSection {
    /// Regression coefficients (p).
    pub coef: Vec<f64>,
    /// Training mean of y.
    pub y_mean: f64,
    /// X loadings P, p × A row-major.
    pub loadings: Vec<f64>,
    /// Rotations R = W(PᵀW)⁻¹, p × A row-major.
    pub rotations: Vec<f64>,
    /// Training score variances, ddof = 1 (A).
    pub score_var: Vec<f64>,
}

/// The domain limits.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Q limit at 95 %.
    pub q95: f64,
    /// Q limit at 99 %.
    pub q99: f64,
    /// T² limit at 95 %.
    pub t2_95: f64,
    /// T² limit at 99 %.
    pub t2_99: f64,
    /// How the Q limits were computed.
    pub q_method: QMethod,
}

/// Cross-validation figures for one latent-variable count.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CvPoint {
    /// Latent variables.
    pub lv: u32,
    /// Root mean square error of cross-validation, leave-group-out (or k-fold if no groups).
    pub rmsecv: f64,
    /// Root mean square error of random-order k-fold cross-validation.
    pub rmsecv_kfold: f64,
}

/// How a model was trained.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Training {
    /// Calibration samples.
    pub n: u32,
    /// Cross-validation per LV count.
    pub cv: Vec<CvPoint>,
    /// Bias of the cross-validated predictions at the chosen LV count.
    pub bias: f64,
    /// SHA-256 of the calibration file as read (hex).
    pub data: String,
    /// Folds of the k-fold CV.
    pub folds: u32,
    /// RMSE of calibration.
    pub rmsec: f64,
    /// Source file name (no directory).
    pub source: String,
    /// The program and version that trained it.
    pub trainer: String,
    /// Metadata column the groups of the grouped CV came from, if any.
    pub group_by: Option<String>,
    /// Reference column.
    pub reference: String,
}

/// A raw spectrum with the outputs the model must reproduce.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReferenceCase {
    /// Expected Q.
    pub q: f64,
    /// Expected T².
    pub t2: f64,
    /// Raw intensities on the model's axis.
    pub spectrum: Vec<f64>,
    /// Expected prediction.
    pub prediction: f64,
}

/// A model file. Field order is the deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelFile {
    /// Model id, e.g. `nir-dyrby2002`.
    pub id: String,
    /// PLS arrays.
    pub pls: PlsSection,
    /// The training axis.
    pub axis: AxisSection,
    /// File format version ([`FORMAT_VERSION`]).
    pub format: u32,
    /// Domain limits.
    pub limits: Limits,
    /// Model version (goes up with each release of the same id).
    pub version: u32,
    /// What it predicts.
    pub quantity: Quantity,
    /// Training metadata.
    pub training: Training,
    /// Ordered preprocessing, ending with mean-centring.
    pub preprocessing: Vec<Step>,
    /// Cases re-checked at load.
    pub reference_cases: Vec<ReferenceCase>,
}

/// Why a model file was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ModelError {
    /// Not a valid deterministic CBOR model file.
    #[error("model file: {0}")]
    Cbor(#[from] CborError),
    /// A format this code does not read.
    #[error("model format {got}, this gateway reads {FORMAT_VERSION}")]
    Format {
        /// Found.
        got: u32,
    },
    /// An id outside `[A-Za-z0-9._-]{1,64}`.
    #[error("model id {0:?} is not a valid identifier")]
    BadId(String),
    /// The axis is invalid.
    #[error("model axis: {0}")]
    Axis(#[from] SpectrumError),
    /// The preprocessing does not fit the axis.
    #[error("model preprocessing: {0}")]
    Preprocess(#[from] PreprocessError),
    /// The PLS arrays are inconsistent.
    #[error("model PLS section: {0}")]
    Pls(#[from] PlsError),
    /// Preprocessing output and PLS variables differ in length.
    #[error("preprocessing gives {preprocessed} variables, PLS expects {pls}")]
    VariableCount {
        /// From the preprocessing.
        preprocessed: usize,
        /// In the PLS arrays.
        pls: usize,
    },
    /// Limits that are not finite, positive and ordered (95 % ≤ 99 %).
    #[error("limits {what} are not finite, positive and ordered")]
    BadLimits {
        /// Which.
        what: &'static str,
    },
    /// None, or too many, reference cases.
    #[error("{count} reference cases; 1 … {MAX_REFERENCE_CASES} required")]
    ReferenceCaseCount {
        /// Found.
        count: usize,
    },
    /// A reference case is not reproduced.
    #[error("reference case {case}: {what} = {got}, the file says {expected}")]
    ReferenceCase {
        /// Index of the case.
        case: usize,
        /// `prediction`, `t2` or `q`.
        what: &'static str,
        /// Stored value.
        expected: f64,
        /// Computed value.
        got: f64,
    },
}

/// The identity of a model: id, version and the SHA-256 of its file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelId {
    /// Model id.
    pub id: String,
    /// Version.
    pub version: u32,
    /// SHA-256 of the model file bytes, hex.
    pub sha256: String,
}

/// Where a spectrum lies relative to the model's domain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Domain {
    /// T² and Q within their 95 % limits.
    Inside,
    /// T² or Q above its 95 % limit but both within 99 %.
    Warning,
    /// T² or Q above its 99 % limit: the prediction is not trusted.
    Outside,
}

/// The model's output for one spectrum. Only [`ValidatedModel::predict`] makes one.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Prediction {
    value: f64,
    quantity: Quantity,
    t2: f64,
    q: f64,
    limits: Limits,
    domain: Domain,
}

impl Prediction {
    /// Predicted value, in [`Prediction::quantity`] units.
    pub fn value(&self) -> f64 {
        self.value
    }
    /// What the value is.
    pub fn quantity(&self) -> Quantity {
        self.quantity
    }
    /// Hotelling T².
    pub fn t2(&self) -> f64 {
        self.t2
    }
    /// Q residual.
    pub fn q(&self) -> f64 {
        self.q
    }
    /// The model's limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// Domain classification.
    pub fn domain(&self) -> Domain {
        self.domain
    }
    /// True when T² and Q are both within their 99 % limits.
    pub fn in_domain(&self) -> bool {
        self.domain != Domain::Outside
    }
}

/// A model that decoded, checked and reproduced its reference cases.
#[derive(Debug, Clone)]
pub struct ValidatedModel {
    file: ModelFile,
    model_id: ModelId,
    axis: Axis,
    pipeline: Pipeline,
    kernel: PlsKernel,
}

fn relative_ok(expected: f64, got: f64, floor: f64) -> bool {
    (expected - got).abs() <= REFERENCE_TOLERANCE * expected.abs().max(floor)
}

fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= crate::prescription::MAX_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

impl ValidatedModel {
    /// Decodes and validates model file bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, ModelError> {
        let file: ModelFile = cbor::from_slice(bytes, MAX_MODEL_BYTES)?;
        let sha256 = hex::encode(Sha256::digest(bytes));
        Self::from_file(file, sha256)
    }

    fn from_file(file: ModelFile, sha256: String) -> Result<Self, ModelError> {
        if file.format != FORMAT_VERSION {
            return Err(ModelError::Format { got: file.format });
        }
        if !valid_id(&file.id) {
            return Err(ModelError::BadId(file.id.chars().take(80).collect()));
        }
        let axis = Axis::new(file.axis.unit, file.axis.values.clone())?;
        if !(file.axis.tolerance >= 0.0 && file.axis.tolerance.is_finite()) {
            return Err(ModelError::BadLimits {
                what: "axis tolerance",
            });
        }
        let pipeline = Pipeline::compile(&file.preprocessing, axis.len())?;
        let kernel = PlsKernel::new(
            file.pls.coef.clone(),
            file.pls.rotations.clone(),
            file.pls.loadings.clone(),
            &file.pls.score_var,
        )?;
        if pipeline.output_len() != kernel.variables() {
            return Err(ModelError::VariableCount {
                preprocessed: pipeline.output_len(),
                pls: kernel.variables(),
            });
        }
        if !file.pls.y_mean.is_finite() {
            return Err(ModelError::BadLimits { what: "y mean" });
        }
        let l = &file.limits;
        let ordered = |a: f64, b: f64| a > 0.0 && a.is_finite() && b.is_finite() && a <= b;
        if !ordered(l.t2_95, l.t2_99) {
            return Err(ModelError::BadLimits { what: "T²" });
        }
        if !ordered(l.q95, l.q99) {
            return Err(ModelError::BadLimits { what: "Q" });
        }
        let count = file.reference_cases.len();
        if count == 0 || count > MAX_REFERENCE_CASES {
            return Err(ModelError::ReferenceCaseCount { count });
        }
        let model_id = ModelId {
            id: file.id.clone(),
            version: file.version,
            sha256,
        };
        let model = ValidatedModel {
            file,
            model_id,
            axis,
            pipeline,
            kernel,
        };
        for (case, rc) in model.file.reference_cases.iter().enumerate() {
            let spectrum = Spectrum::new(model.axis.clone(), rc.spectrum.clone())?;
            let p = model
                .predict(&spectrum)
                .map_err(|_| ModelError::ReferenceCase {
                    case,
                    what: "axis",
                    expected: 0.0,
                    got: 0.0,
                })?;
            let l = model.file.limits;
            for (what, expected, got, floor) in [
                ("prediction", rc.prediction, p.value, 1e-12),
                ("t2", rc.t2, p.t2, l.t2_99 * 1e-6),
                ("q", rc.q, p.q, l.q99 * 1e-6),
            ] {
                if !relative_ok(expected, got, floor) {
                    return Err(ModelError::ReferenceCase {
                        case,
                        what,
                        expected,
                        got,
                    });
                }
            }
        }
        Ok(model)
    }

    /// Encodes a model file (the bytes whose SHA-256 is its identity).
    pub fn encode(file: &ModelFile) -> Result<Vec<u8>, ModelError> {
        Ok(cbor::to_vec(file)?)
    }

    /// The identity.
    pub fn id(&self) -> &ModelId {
        &self.model_id
    }

    /// The decoded file (for reports and the model card).
    pub fn file(&self) -> &ModelFile {
        &self.file
    }

    /// The training axis.
    pub fn axis(&self) -> &Axis {
        &self.axis
    }

    /// The compiled preprocessing.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Prediction, T², Q and domain of one spectrum. The spectrum's axis must match the model's
    /// within its tolerance; nothing is interpolated.
    pub fn predict(&self, spectrum: &Spectrum) -> Result<Prediction, AxisMismatch> {
        self.axis
            .check_matches(spectrum.axis(), self.file.axis.tolerance)?;
        let mut out = Vec::with_capacity(spectrum.len());
        let mut scratch = Vec::with_capacity(spectrum.len());
        Ok(self.predict_values(spectrum.values(), &mut out, &mut scratch))
    }

    /// As [`ValidatedModel::predict`] with caller-owned buffers, for a spectrum whose axis the
    /// caller has already matched (`values` on this model's axis).
    pub fn predict_values(
        &self,
        values: &[f64],
        out: &mut Vec<f64>,
        scratch: &mut Vec<f64>,
    ) -> Prediction {
        self.pipeline.apply_into(values, out, scratch);
        let k = self
            .kernel
            .evaluate(out)
            .unwrap_or(super::pls::KernelOutput {
                centred_prediction: f64::NAN,
                t2: f64::INFINITY,
                q: f64::INFINITY,
            });
        let l = self.file.limits;
        // Written so NaN counts as outside.
        let domain = if !(k.t2 <= l.t2_99 && k.q <= l.q99) {
            Domain::Outside
        } else if k.t2 > l.t2_95 || k.q > l.q95 {
            Domain::Warning
        } else {
            Domain::Inside
        };
        Prediction {
            value: self.file.pls.y_mean + k.centred_prediction,
            quantity: self.file.quantity,
            t2: k.t2,
            q: k.q,
            limits: l,
            domain,
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

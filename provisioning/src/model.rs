//! `dosegate-hub model train`: trains a PAT model file from a training specification and a
//! calibration CSV, and writes the model (`<id>.cbor`), a JSON view for people (`<id>.json`) and
//! the model card (`<id>.md`).
//!
//! The computation (preprocessing, PLS, cross-validation, limits) is `dosegate_core::inference`,
//! the very code the gateway runs; this module only reads files, hashes the data and writes the
//! results. It does not sign the model: the bytes it writes are what the hub signs later.

use std::fmt::Write as _;
use std::io::Read as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use dosegate_core::inference::model::{ModelFile, Quantity};
use dosegate_core::inference::preprocess::Step;
use dosegate_core::inference::train::{
    CalibrationSet, TrainingSpec, bias, correlation, rmse, train,
};
use dosegate_core::spectrum::AxisUnit;
use dosegate_core::spectrum::csv::{self, MAX_CSV_BYTES};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// A training specification file: which data, on which axis unit, and the model spec.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SpecFile {
    /// Calibration CSV, relative to the data directory.
    pub data: String,
    /// Axis unit of the CSV's header.
    pub unit: AxisUnit,
    /// The model.
    pub model: TrainingSpec,
}

/// What `model train` asks for.
#[derive(Debug, Clone)]
pub struct TrainRequest {
    /// The specification (TOML).
    pub spec: PathBuf,
    /// Directory holding the calibration data.
    pub data_dir: PathBuf,
    /// Where to write `<id>.cbor`, `<id>.json`, `<id>.md`.
    pub out_dir: PathBuf,
}

/// What `model train` reports.
#[derive(Debug, Clone, Serialize)]
pub struct TrainSummary {
    /// Model id.
    pub id: String,
    /// Version.
    pub version: u32,
    /// SHA-256 of the model file.
    pub sha256: String,
    /// Bytes.
    pub bytes: usize,
    /// Latent variables chosen.
    pub lv: usize,
    /// RMSECV (grouped if groups were given).
    pub rmsecv: f64,
    /// RMSECV of interleaved k-fold.
    pub rmsecv_kfold: f64,
    /// Calibration samples.
    pub n: u32,
    /// Files written.
    pub files: Vec<PathBuf>,
}

/// Reads a text file, gunzipping it when its name ends in `.gz`, refusing more than `cap` bytes.
pub fn read_text(path: &Path, cap: usize) -> Result<(String, Vec<u8>)> {
    let raw = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let text_bytes = if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(raw.as_slice())
            .take(cap as u64 + 1)
            .read_to_end(&mut out)
            .with_context(|| format!("decompressing {}", path.display()))?;
        out
    } else {
        raw.clone()
    };
    if text_bytes.len() > cap {
        bail!("{} is larger than {cap} bytes", path.display());
    }
    let text = String::from_utf8(text_bytes).context("not UTF-8")?;
    Ok((text, raw))
}

/// Trains and writes one model.
pub fn train_model(req: &TrainRequest) -> Result<TrainSummary> {
    let spec_text = std::fs::read_to_string(&req.spec)
        .with_context(|| format!("reading {}", req.spec.display()))?;
    let spec: SpecFile =
        toml::from_str(&spec_text).with_context(|| format!("parsing {}", req.spec.display()))?;
    let data_path = req.data_dir.join(&spec.data);
    let (text, raw) = read_text(&data_path, MAX_CSV_BYTES)?;
    let table = csv::parse(&text, spec.unit).with_context(|| format!("{}", data_path.display()))?;
    let reference = table
        .reference_name()
        .context("the calibration file has no reference column")?
        .to_owned();
    let mut rows = Vec::new();
    let mut y = Vec::new();
    let group_col = match &spec.model.group_by {
        Some(g) => Some(
            table
                .metadata_index(g)
                .with_context(|| format!("no metadata column {g:?}"))?,
        ),
        None => None,
    };
    let mut groups = Vec::new();
    for row in table.rows() {
        let Some(r) = row.reference else {
            bail!("line {}: no reference value", row.line);
        };
        rows.push(row.spectrum.values());
        y.push(r);
        if let Some(c) = group_col {
            groups.push(row.metadata.get(c).cloned().unwrap_or_default());
        }
    }
    let set = CalibrationSet {
        axis: table.axis(),
        rows,
        y,
        groups: group_col.map(|_| groups),
        reference,
        source: spec.data.clone(),
        data_sha256: hex::encode(Sha256::digest(&raw)),
        trainer: format!("dosegate-hub {}", env!("CARGO_PKG_VERSION")),
    };
    let trained = train(&spec.model, &set).context("training")?;
    let file = trained.model.file();
    let chosen = file.pls.score_var.len();
    let cvp = file
        .training
        .cv
        .iter()
        .find(|c| c.lv as usize == chosen)
        .context("no CV figure for the chosen LV count")?;
    std::fs::create_dir_all(&req.out_dir)?;
    let base = req.out_dir.join(&file.id);
    let cbor_path = base.with_extension("cbor");
    let json_path = base.with_extension("json");
    let md_path = base.with_extension("md");
    std::fs::write(&cbor_path, &trained.bytes)?;
    std::fs::write(
        &json_path,
        serde_json::to_string_pretty(&json_view(file, &trained.model.id().sha256))? + "\n",
    )?;
    let card = model_card(
        file,
        &trained.model.id().sha256,
        trained.bytes.len(),
        &trained.cv_predictions,
        &set.y,
        &req.spec,
    );
    std::fs::write(&md_path, card)?;
    Ok(TrainSummary {
        id: file.id.clone(),
        version: file.version,
        sha256: trained.model.id().sha256.clone(),
        bytes: trained.bytes.len(),
        lv: chosen,
        rmsecv: cvp.rmsecv,
        rmsecv_kfold: cvp.rmsecv_kfold,
        n: file.training.n,
        files: vec![cbor_path, json_path, md_path],
    })
}

/// A JSON view for people: everything but the long arrays, which are summarised by length.
pub fn json_view(file: &ModelFile, sha256: &str) -> serde_json::Value {
    serde_json::json!({
        "id": file.id,
        "version": file.version,
        "sha256": sha256,
        "format": file.format,
        "quantity": file.quantity,
        "axis": {
            "unit": file.axis.unit,
            "points": file.axis.values.len(),
            "first": file.axis.values.first(),
            "last": file.axis.values.last(),
            "tolerance": file.axis.tolerance,
        },
        "preprocessing": file.preprocessing.iter().map(step_view).collect::<Vec<_>>(),
        "latent_variables": file.pls.score_var.len(),
        "variables": file.pls.coef.len(),
        "y_mean": file.pls.y_mean,
        "limits": file.limits,
        "training": file.training,
        "reference_cases": file.reference_cases.iter().map(|c| serde_json::json!({
            "prediction": c.prediction, "t2": c.t2, "q": c.q
        })).collect::<Vec<_>>(),
    })
}

/// A step as JSON, with its fitted vectors summarised by their length.
pub fn step_view(step: &Step) -> serde_json::Value {
    match step {
        Step::Msc { reference } => {
            serde_json::json!({ "msc": { "reference_len": reference.len() } })
        }
        Step::Centre { mean } => serde_json::json!({ "centre": { "mean_len": mean.len() } }),
        other => serde_json::to_value(other).unwrap_or(serde_json::Value::Null),
    }
}

/// A one-line description of a step.
pub fn step_label(step: &Step) -> String {
    match step {
        Step::Snv { ddof } => format!("SNV (ddof {ddof})"),
        Step::Msc { reference } => {
            format!("MSC (reference: training mean, {} points)", reference.len())
        }
        Step::Savgol {
            deriv,
            order,
            window,
        } => format!(
            "Savitzky–Golay window {window}, order {order}, derivative {deriv} (edges: nearest)"
        ),
        Step::Select { end, start } => format!("select points {start}..{end}"),
        Step::Centre { mean } => format!("mean-centre ({} variables)", mean.len()),
    }
}

#[expect(
    clippy::too_many_lines,
    reason = "the card is one linear Markdown template"
)]
fn model_card(
    file: &ModelFile,
    sha256: &str,
    bytes: usize,
    cv_pred: &[f64],
    y: &[f64],
    spec: &Path,
) -> String {
    let mut s = String::new();
    let t = &file.training;
    let lv = file.pls.score_var.len();
    let unit = file.quantity.unit();
    let _ = writeln!(s, "# Model card: `{}` version {}\n", file.id, file.version);
    let _ = writeln!(
        s,
        "Generated by `dosegate-hub model train` from `{}`; do not edit by hand (re-run `scripts/train-models.sh`).\n",
        spec.file_name()
            .map(|f| f.to_string_lossy())
            .unwrap_or_default()
    );
    let _ = writeln!(s, "| | |\n|---|---|");
    let _ = writeln!(
        s,
        "| file | `{}.cbor` ({bytes} bytes, deterministic CBOR, format {}) |",
        file.id, file.format
    );
    let _ = writeln!(s, "| SHA-256 (model identity) | `{sha256}` |");
    let what = match file.quantity {
        Quantity::ContentPctWw => "drug content, % w/w (dose = content × unit mass)",
        Quantity::AmountMg => "drug amount per unit, mg",
    };
    let _ = writeln!(s, "| predicts | {what} |");
    let _ = writeln!(s, "| reference column | `{}` |", t.reference);
    let _ = writeln!(
        s,
        "| calibration data | `{}` (SHA-256 `{}`), n = {} |",
        t.source, t.data, t.n
    );
    let _ = writeln!(
        s,
        "| axis | {} points, {} … {} {}, tolerance ± {:.4} (a mismatch is refused, never interpolated) |",
        file.axis.values.len(),
        file.axis.values.first().copied().unwrap_or_default(),
        file.axis.values.last().copied().unwrap_or_default(),
        file.axis.unit.label(),
        file.axis.tolerance
    );
    let _ = writeln!(s, "| latent variables | {lv} |");
    let _ = writeln!(s, "| trainer | {} |\n", t.trainer);
    let _ = writeln!(s, "## Preprocessing (in order)\n");
    for (i, step) in file.preprocessing.iter().enumerate() {
        let _ = writeln!(s, "{}. {}", i + 1, step_label(step));
    }
    let cv_kind = t
        .group_by
        .as_ref()
        .map_or_else(|| "k-fold".to_owned(), |g| format!("leave-`{g}`-out"));
    let _ = writeln!(s, "\n## Cross-validation\n");
    let _ = writeln!(
        s,
        "LVs chosen as the fewest within 2 % of the lowest {cv_kind} RMSECV. Interleaved {}-fold is shown beside it (optimistic when samples of one group are correlated).\n",
        t.folds
    );
    let _ = writeln!(
        s,
        "| LV | RMSECV {cv_kind} ({unit}) | RMSECV {}-fold ({unit}) |\n|---|---|---|",
        t.folds
    );
    for c in &t.cv {
        let mark = if c.lv as usize == lv { " ←" } else { "" };
        let _ = writeln!(
            s,
            "| {}{mark} | {:.4} | {:.4} |",
            c.lv, c.rmsecv, c.rmsecv_kfold
        );
    }
    let _ = writeln!(
        s,
        "\nAt {lv} LV: RMSECV {:.4} {unit}, bias {:+.4}, r {:.4}; RMSEC {:.4}.\n",
        rmse(cv_pred, y),
        bias(cv_pred, y),
        correlation(cv_pred, y),
        t.rmsec
    );
    let l = &file.limits;
    let _ = writeln!(s, "## Domain limits\n");
    let _ = writeln!(s, "| | 95 % | 99 % | method |\n|---|---|---|---|");
    let _ = writeln!(
        s,
        "| Hotelling T² | {:.4} | {:.4} | F distribution, A(n−1)/(n−A)·F(A, n−A) |",
        l.t2_95, l.t2_99
    );
    let _ = writeln!(
        s,
        "| Q residual | {:.6e} | {:.6e} | {:?} |",
        l.q95, l.q99, l.q_method
    );
    let _ = writeln!(
        s,
        "\nRelease needs T² and Q within the 99 % limits (a warning above 95 %); a spectrum outside is quarantined for the Qualified Person, whatever it predicts.\n"
    );
    let _ = writeln!(
        s,
        "## Reference cases\n\n{} raw spectra from the calibration set with their prediction, T² and Q; the gateway recomputes them at load and refuses the model unless they agree to 1e-9 relative.\n",
        file.reference_cases.len()
    );
    let _ = writeln!(
        s,
        "## Limitations\n\n- Valid only for the product, instrument and axis above; an instrument change shows up as Q above its limit.\n- T² and Q detect spectra unlike the calibration set, not wrong reference values.\n- The hold-out set is scored separately (see docs/pat.md), never used here."
    );
    s
}

/// The `model` subcommands of `dosegate-hub`.
pub mod cli {
    use std::path::PathBuf;

    use anyhow::{Context as _, Result};
    use dosegate_core::inference::ValidatedModel;

    use super::{TrainRequest, json_view, train_model};

    const TRAIN_EXAMPLES: &str = "\
Examples:
  dosegate-hub model train models/specs/nir-dyrby2002.toml --data-dir ../shared/data/pat --out-dir models
  dosegate-hub model train models/specs/raman-dyrby2002.toml --json
  scripts/train-models.sh        # all committed models, reproducibly

Writes OUT_DIR/<id>.cbor (the model; its SHA-256 is its identity), <id>.json (a view for people)
and <id>.md (the model card). Exit codes: 0 trained, 2 error (bad spec, data or training failure).";

    /// `dosegate-hub model …`
    #[derive(Debug, clap::Subcommand)]
    pub enum ModelCommand {
        /// Train a PLS model from a specification and calibration CSV; write model, JSON view
        /// and model card.
        #[command(after_help = TRAIN_EXAMPLES)]
        Train {
            /// Training specification (TOML; see models/specs/).
            spec: PathBuf,
            /// Directory holding the calibration data named in the spec.
            #[arg(long, default_value = "../shared/data/pat")]
            data_dir: PathBuf,
            /// Where to write the model, its JSON view and card.
            #[arg(long, default_value = "models")]
            out_dir: PathBuf,
            /// Print a JSON summary.
            #[arg(long)]
            json: bool,
        },
        /// Validate a model file (shapes, reference cases) and show it.
        Show {
            /// The model file (.cbor).
            model: PathBuf,
        },
    }

    /// Runs a `model` subcommand.
    pub fn run(command: ModelCommand) -> Result<()> {
        match command {
            ModelCommand::Train {
                spec,
                data_dir,
                out_dir,
                json,
            } => {
                let s = train_model(&TrainRequest {
                    spec,
                    data_dir,
                    out_dir,
                })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&s)?);
                } else {
                    println!(
                        "trained {} v{}: {} LV, RMSECV {:.4} (k-fold {:.4}), n = {}\n  sha256 {}\n  wrote {}",
                        s.id,
                        s.version,
                        s.lv,
                        s.rmsecv,
                        s.rmsecv_kfold,
                        s.n,
                        s.sha256,
                        s.files
                            .iter()
                            .map(|f| f.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    );
                }
            }
            ModelCommand::Show { model } => {
                let bytes = std::fs::read(&model)
                    .with_context(|| format!("reading {}", model.display()))?;
                let m = ValidatedModel::from_bytes(&bytes)
                    .with_context(|| format!("{}", model.display()))?;
                println!(
                    "{}",
                    serde_json::to_string_pretty(&json_view(m.file(), &m.id().sha256))?
                );
            }
        }
        Ok(())
    }
}

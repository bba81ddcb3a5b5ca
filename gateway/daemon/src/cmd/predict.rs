//! `dosegate predict`: runs a PAT model on spectra by hand — JCAMP-DX files or a CSV in the shared
//! layout — and prints prediction, Hotelling T², Q, their 99 % limits and whether each spectrum is
//! inside the model's domain; with reference values in the CSV, also RMSEP, bias and r.
//!
//! The model is validated exactly as the gateway validates it (reference cases re-checked); a
//! spectrum on another axis is refused with the evidence, never interpolated. This command makes
//! no release decision and writes nothing.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use dosegate_core::inference::ValidatedModel;
use dosegate_core::inference::model::MAX_MODEL_BYTES;
use dosegate_core::inference::train::{bias, correlation, rmse};
use dosegate_core::spectrum::Spectrum;
use serde::Serialize;

use crate::spectra;

/// Predict with a PAT model from JCAMP-DX spectra or a CSV file.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Predict with a validated PAT model (PLS on NIR or Raman spectra).\n\n\
For each spectrum prints the prediction (in the model's unit: % w/w or mg), Hotelling T², the Q \
residual, their 99 % limits and `in_domain` (both within 99 %). A spectrum whose axis differs from \
the model's is refused (error code `axis-mismatch`), never interpolated. A CSV must be in the shared \
layout (reference value first, metadata, then numeric-headed spectral columns; `.csv.gz` is \
read too); its axis is taken in the model's unit. When the CSV carries reference values, `reference` \
is printed per row and RMSEP, bias and r for the file.",
    after_help = "\
Examples:
  dosegate predict --model models/nir-dyrby2002.cbor --csv ../shared/data/pat/dyrby2002_nir_cal.csv
  dosegate predict --model models/raman-dyrby2002.cbor tablet-01.jdx tablet-02.jdx --json

Exit status: 0 every spectrum predicted inside the domain; 1 at least one spectrum refused or \
outside the domain; 2 usage, I/O or model error.
Error codes (JSON `error.code`): axis-mismatch, unreadable-spectrum."
)]
pub struct Args {
    /// The model file (`models/<id>.cbor`).
    #[arg(long, value_name = "M")]
    model: PathBuf,
    /// A CSV file of spectra in the shared layout.
    #[arg(long, value_name = "FILE", conflicts_with = "spectra")]
    csv: Option<PathBuf>,
    /// JCAMP-DX spectra.
    #[arg(value_name = "SPECTRUM.jdx", required_unless_present = "csv")]
    spectra: Vec<PathBuf>,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Debug, Serialize)]
struct ErrorView {
    code: &'static str,
    message: String,
}

#[derive(Debug, Serialize)]
struct Row {
    source: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    prediction: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    t2: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    q: Option<f64>,
    t2_limit99: f64,
    q_limit99: f64,
    in_domain: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    reference: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorView>,
}

#[derive(Debug, Serialize)]
struct Summary {
    n: usize,
    rmsep: f64,
    bias: f64,
    r: f64,
}

#[derive(Debug, Serialize)]
struct Report {
    model: String,
    version: u32,
    sha256: String,
    unit: &'static str,
    spectra: Vec<Row>,
    #[serde(skip_serializing_if = "Option::is_none")]
    summary: Option<Summary>,
}

fn row(
    model: &ValidatedModel,
    source: String,
    spectrum: Result<Spectrum>,
    reference: Option<f64>,
) -> Row {
    let l = model.file().limits;
    let mut r = Row {
        source,
        prediction: None,
        t2: None,
        q: None,
        t2_limit99: l.t2_99,
        q_limit99: l.q99,
        in_domain: false,
        reference,
        error: None,
    };
    match spectrum {
        Err(e) => {
            r.error = Some(ErrorView {
                code: "unreadable-spectrum",
                message: format!("{e:#}"),
            });
        }
        Ok(s) => match model.predict(&s) {
            Err(m) => {
                r.error = Some(ErrorView {
                    code: "axis-mismatch",
                    message: m.to_string(),
                });
            }
            Ok(p) => {
                r.prediction = Some(p.value());
                r.t2 = Some(p.t2());
                r.q = Some(p.q());
                r.in_domain = p.in_domain();
            }
        },
    }
    r
}

/// Runs the command.
pub fn run(args: &Args) -> Result<ExitCode> {
    let bytes = std::fs::read(&args.model)
        .with_context(|| format!("cannot read model {}", args.model.display()))?;
    if bytes.len() > MAX_MODEL_BYTES {
        anyhow::bail!("model file larger than {MAX_MODEL_BYTES} bytes");
    }
    let model = ValidatedModel::from_bytes(&bytes)
        .with_context(|| format!("model {} refused", args.model.display()))?;
    let mut rows = Vec::new();
    if let Some(csv) = &args.csv {
        let table = spectra::read_csv(csv, model.axis().unit())?;
        let name = csv
            .file_name()
            .map_or_else(String::new, |f| f.to_string_lossy().into_owned());
        for r in table.rows() {
            rows.push(row(
                &model,
                format!("{name}:{}", r.line),
                Ok(r.spectrum.clone()),
                r.reference,
            ));
        }
    } else {
        for path in &args.spectra {
            rows.push(row(
                &model,
                path.display().to_string(),
                spectra::read_jcamp(path),
                None,
            ));
        }
    }
    let pairs: Vec<(f64, f64)> = rows
        .iter()
        .filter_map(|r| Some((r.prediction?, r.reference?)))
        .collect();
    let summary = (!pairs.is_empty()).then(|| {
        let (p, y): (Vec<f64>, Vec<f64>) = pairs.iter().copied().unzip();
        Summary {
            n: p.len(),
            rmsep: rmse(&p, &y),
            bias: bias(&p, &y),
            r: correlation(&p, &y),
        }
    });
    let all_in = rows.iter().all(|r| r.in_domain && r.error.is_none());
    let report = Report {
        model: model.id().id.clone(),
        version: model.id().version,
        sha256: model.id().sha256.clone(),
        unit: model.file().quantity.unit(),
        spectra: rows,
        summary,
    };
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&report);
    }
    Ok(if all_in {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

fn print_table(r: &Report) {
    println!(
        "model {} v{} ({}…), prediction in {}",
        r.model,
        r.version,
        r.sha256.get(..16).unwrap_or_default(),
        r.unit
    );
    println!(
        "{:<32} {:>10} {:>10} {:>12} {:>9} {:>10}",
        "spectrum", "prediction", "T²", "Q", "in_domain", "reference"
    );
    for s in &r.spectra {
        if let Some(e) = &s.error {
            println!("{:<32} refused [{}]: {}", s.source, e.code, e.message);
            continue;
        }
        println!(
            "{:<32} {:>10.4} {:>10.3} {:>12.4e} {:>9} {:>10}",
            s.source,
            s.prediction.unwrap_or(f64::NAN),
            s.t2.unwrap_or(f64::NAN),
            s.q.unwrap_or(f64::NAN),
            s.in_domain,
            s.reference.map_or_else(String::new, |v| format!("{v:.4}"))
        );
    }
    if let Some(l) = r.spectra.first() {
        println!("99 % limits: T² {:.3}, Q {:.4e}", l.t2_limit99, l.q_limit99);
    }
    if let Some(s) = &r.summary {
        println!(
            "n = {}: RMSEP {:.4} {}, bias {:+.4}, r {:.4}",
            s.n, s.rmsep, r.unit, s.bias, s.r
        );
    }
}

//! Reading spectra from files: JCAMP-DX (`.jdx`, `.dx`, `.jcamp`) and the shared CSV layout
//! (`.csv`, `.csv.gz`), each size-capped before it is parsed.
//!
//! Parsing is `dosegate_core::spectrum`; this module only opens, decompresses (bounded) and hands
//! over text. It does not decide anything about the spectra.

use std::io::Read as _;
use std::path::Path;

use anyhow::{Context as _, Result, bail};
use dosegate_core::spectrum::csv::{self, MAX_CSV_BYTES, SpectralTable};
use dosegate_core::spectrum::jcamp::{self, MAX_JCAMP_BYTES};
use dosegate_core::spectrum::{AxisUnit, Spectrum};

/// Reads a text file of at most `cap` bytes, gunzipping it (bounded) when its name ends in `.gz`.
pub fn read_text(path: &Path, cap: usize) -> Result<String> {
    let file =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut bytes = Vec::new();
    let limit = cap as u64 + 1;
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot decompress {}", path.display()))?;
    } else {
        file.take(limit)
            .read_to_end(&mut bytes)
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    if bytes.len() > cap {
        bail!("{} is larger than {cap} bytes", path.display());
    }
    String::from_utf8(bytes).with_context(|| format!("{} is not UTF-8 text", path.display()))
}

/// Reads one JCAMP-DX spectrum.
pub fn read_jcamp(path: &Path) -> Result<Spectrum> {
    let text = read_text(path, MAX_JCAMP_BYTES)?;
    jcamp::parse(&text).with_context(|| format!("{}", path.display()))
}

/// Reads a CSV table in the shared layout; its axis is taken to be in `unit`.
pub fn read_csv(path: &Path, unit: AxisUnit) -> Result<SpectralTable> {
    let text = read_text(path, MAX_CSV_BYTES)?;
    csv::parse(&text, unit).with_context(|| format!("{}", path.display()))
}

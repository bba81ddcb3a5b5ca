//! The spectrometer as the gateway meets it on a spoke: vendor software that imports a sample
//! list from a drop folder and exports one JCAMP-DX file per measured unit into it.
//!
//! [`DropFolderInstrument::poll`] answers every `<job>.request.json` it finds (written by the
//! gateway after printing) with `<job>-<unit>.jdx` for each requested unit, taking spectra in
//! turn from the ones it was given, then renames the request to `<job>.request.done`. Exports
//! are written under a temporary name and renamed, as instrument software does, so the gateway
//! never reads half a file.

use std::path::{Path, PathBuf};

use dosegate_core::spectrum::{Spectrum, jcamp};

/// Largest request file read.
pub const MAX_REQUEST_BYTES: u64 = 64 * 1024;
/// Most units one request may ask for.
pub const MAX_UNITS: u32 = 1000;

/// Why a request could not be answered.
#[derive(Debug, thiserror::Error)]
pub enum DropFolderError {
    /// Reading or writing the folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The request is not what the gateway writes.
    #[error("{path}: not a measurement request: {reason}")]
    BadRequest {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// No spectra to serve.
    #[error("no spectra to serve")]
    Empty,
}

/// One answered request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answered {
    /// The job key.
    pub job: String,
    /// The files written.
    pub files: Vec<PathBuf>,
}

/// The simulated instrument software on a drop folder.
#[derive(Debug, Clone)]
pub struct DropFolderInstrument {
    dir: PathBuf,
    spectra: Vec<(String, Spectrum)>,
    next: usize,
}

impl DropFolderInstrument {
    /// Serves `spectra` (title, spectrum) in turn, cycling, from `dir`.
    pub fn new(dir: &Path, spectra: Vec<(String, Spectrum)>) -> Result<Self, DropFolderError> {
        if spectra.is_empty() {
            return Err(DropFolderError::Empty);
        }
        Ok(Self {
            dir: dir.to_owned(),
            spectra,
            next: 0,
        })
    }

    /// Answers every pending request once.
    pub fn poll(&mut self) -> Result<Vec<Answered>, DropFolderError> {
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| DropFolderError::Io { path, source }
        };
        let mut requests: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(io(&self.dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.ends_with(".request.json"))
            })
            .collect();
        requests.sort();
        let mut answered = Vec::new();
        for request in requests {
            answered.push(self.answer(&request)?);
        }
        Ok(answered)
    }

    fn answer(&mut self, request: &Path) -> Result<Answered, DropFolderError> {
        let bad = |reason: String| DropFolderError::BadRequest {
            path: request.to_owned(),
            reason,
        };
        let meta = std::fs::metadata(request).map_err(|source| DropFolderError::Io {
            path: request.to_owned(),
            source,
        })?;
        if meta.len() > MAX_REQUEST_BYTES {
            return Err(bad(format!("{} bytes", meta.len())));
        }
        let text = std::fs::read_to_string(request).map_err(|source| DropFolderError::Io {
            path: request.to_owned(),
            source,
        })?;
        let (job, units) = parse_request(&text).map_err(bad)?;
        let mut files = Vec::new();
        for unit in 1..=units {
            let (title, spectrum) = self
                .spectra
                .get(self.next % self.spectra.len())
                .ok_or(DropFolderError::Empty)?;
            self.next += 1;
            let path = self.dir.join(format!("{job}-{unit}.jdx"));
            let tmp = self.dir.join(format!(".{job}-{unit}.jdx.part"));
            let text =
                jcamp::write_xypoints(&format!("{title} (job {job}, unit {unit})"), spectrum);
            std::fs::write(&tmp, text).map_err(|source| DropFolderError::Io {
                path: tmp.clone(),
                source,
            })?;
            std::fs::rename(&tmp, &path).map_err(|source| DropFolderError::Io {
                path: path.clone(),
                source,
            })?;
            files.push(path);
        }
        let done = request.with_extension("done");
        std::fs::rename(request, &done)
            .map_err(|source| DropFolderError::Io { path: done, source })?;
        Ok(Answered { job, files })
    }
}

/// Reads `{"job": "...", "units": N, ...}` without a JSON library: the two fields the
/// instrument needs, bounded and checked (job keys are `[A-Za-z0-9._-]`).
fn parse_request(text: &str) -> Result<(String, u32), String> {
    let field = |name: &str| -> Result<&str, String> {
        let key = format!("\"{name}\"");
        let at = text.find(&key).ok_or_else(|| format!("no {name}"))?;
        let rest = text
            .get(at + key.len()..)
            .and_then(|r| r.trim_start().strip_prefix(':'))
            .ok_or_else(|| format!("no value for {name}"))?
            .trim_start();
        let end = rest
            .find([',', '}', '\n'])
            .ok_or_else(|| format!("unterminated {name}"))?;
        Ok(rest.get(..end).unwrap_or_default().trim())
    };
    let job = field("job")?
        .strip_prefix('"')
        .and_then(|j| j.strip_suffix('"'))
        .ok_or("job is not a string")?;
    let job_ok = !job.is_empty()
        && job.len() <= 128
        && job
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        && !job.starts_with('.');
    if !job_ok {
        return Err(format!("job {job:?} is not a job key"));
    }
    let units: u32 = field("units")?
        .parse()
        .map_err(|_| "units is not a number".to_owned())?;
    if units == 0 || units > MAX_UNITS {
        return Err(format!("units {units} outside 1..={MAX_UNITS}"));
    }
    Ok((job.to_owned(), units))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dosegate_core::spectrum::{Axis, AxisUnit};

    fn spectrum(v: f64) -> Spectrum {
        let axis = Axis::new(AxisUnit::PerCentimetre, vec![1000.0, 1001.0, 1002.0]).unwrap();
        Spectrum::new(axis, vec![v, v + 0.5, v + 1.0]).unwrap()
    }

    #[test]
    fn answers_a_request_with_one_export_per_unit_in_turn() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("job-7.request.json"),
            "{\n  \"job\": \"job-7\",\n  \"units\": 3,\n  \"files\": []\n}",
        )
        .unwrap();
        let mut inst = DropFolderInstrument::new(
            dir.path(),
            vec![("a".into(), spectrum(1.0)), ("b".into(), spectrum(2.0))],
        )
        .unwrap();
        let answered = inst.poll().unwrap();
        assert_eq!(answered.len(), 1);
        assert_eq!(answered[0].files.len(), 3);
        let third = std::fs::read_to_string(dir.path().join("job-7-3.jdx")).unwrap();
        let back = jcamp::parse(&third).unwrap();
        assert_eq!(
            back.values(),
            spectrum(1.0).values(),
            "cycles back to the first"
        );
        assert!(dir.path().join("job-7.request.done").exists());
        assert!(inst.poll().unwrap().is_empty(), "answered once");
    }

    #[test]
    fn refuses_requests_that_could_escape_the_folder_or_ask_too_much() {
        for text in [
            "{\"job\": \"../x\", \"units\": 1}",
            "{\"job\": \".hidden\", \"units\": 1}",
            "{\"job\": \"j\", \"units\": 0}",
            "{\"job\": \"j\", \"units\": 100000}",
            "{\"units\": 1}",
            "{\"job\": 5, \"units\": 1}",
        ] {
            assert!(parse_request(text).is_err(), "{text}");
        }
        assert_eq!(
            parse_request("{\"job\": \"intake-3\", \"units\": 2}").unwrap(),
            ("intake-3".to_owned(), 2)
        );
    }
}

//! A spectrometer that serves spectra from files: JCAMP-DX files (one per unit, in order) or the
//! rows of a CSV in the shared layout. Unit `n` gets the `n`-th spectrum, wrapping around.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use dosegate_core::instrument::Spectrometer;
use dosegate_core::spectrum::csv::{self, CsvError, MAX_CSV_BYTES};
use dosegate_core::spectrum::jcamp::{self, JcampError, MAX_JCAMP_BYTES};
use dosegate_core::spectrum::{AxisUnit, Spectrum};

/// Why the simulator could not serve a spectrum.
#[derive(Debug, thiserror::Error)]
pub enum SimSpectrometerError {
    /// A file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A file is larger than its cap.
    #[error("{path}: larger than {cap} bytes")]
    TooLarge {
        /// The file.
        path: PathBuf,
        /// The cap.
        cap: usize,
    },
    /// A JCAMP-DX file did not parse.
    #[error("{path}: {source}")]
    Jcamp {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: JcampError,
    },
    /// The CSV did not parse.
    #[error("{path}: {source}")]
    Csv {
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: CsvError,
    },
    /// Nothing to serve.
    #[error("no spectra to serve")]
    Empty,
    /// Unit 0 does not exist.
    #[error("unit numbers start at 1")]
    UnitZero,
}

fn read_capped(path: &Path, cap: usize) -> Result<String, SimSpectrometerError> {
    let io = |source| SimSpectrometerError::Io {
        path: path.to_owned(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut bytes = Vec::new();
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file)
            .take(cap as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    } else {
        file.take(cap as u64 + 1)
            .read_to_end(&mut bytes)
            .map_err(io)?;
    }
    if bytes.len() > cap {
        return Err(SimSpectrometerError::TooLarge {
            path: path.to_owned(),
            cap,
        });
    }
    String::from_utf8(bytes)
        .map_err(|e| io(std::io::Error::new(std::io::ErrorKind::InvalidData, e)))
}

/// Serves spectra loaded from files.
#[derive(Debug, Clone)]
pub struct FileSpectrometer {
    spectra: Vec<Spectrum>,
    served: u64,
}

impl FileSpectrometer {
    /// Loads JCAMP-DX files; unit n gets file n.
    pub fn from_jcamp_files(paths: &[PathBuf]) -> Result<Self, SimSpectrometerError> {
        let mut spectra = Vec::with_capacity(paths.len());
        for p in paths {
            let text = read_capped(p, MAX_JCAMP_BYTES)?;
            spectra.push(
                jcamp::parse(&text).map_err(|source| SimSpectrometerError::Jcamp {
                    path: p.clone(),
                    source,
                })?,
            );
        }
        Self::from_spectra(spectra)
    }

    /// Loads the rows of a CSV in the shared layout (optionally `.gz`); unit n gets row n.
    pub fn from_csv(path: &Path, unit: AxisUnit) -> Result<Self, SimSpectrometerError> {
        let text = read_capped(path, MAX_CSV_BYTES)?;
        let table = csv::parse(&text, unit).map_err(|source| SimSpectrometerError::Csv {
            path: path.to_owned(),
            source,
        })?;
        Self::from_spectra(table.rows().iter().map(|r| r.spectrum.clone()).collect())
    }

    /// Serves the given spectra.
    pub fn from_spectra(spectra: Vec<Spectrum>) -> Result<Self, SimSpectrometerError> {
        if spectra.is_empty() {
            return Err(SimSpectrometerError::Empty);
        }
        Ok(FileSpectrometer { spectra, served: 0 })
    }

    /// How many spectra were served.
    pub fn served(&self) -> u64 {
        self.served
    }
}

impl Spectrometer for FileSpectrometer {
    type Error = SimSpectrometerError;

    fn acquire(&mut self, unit: u32) -> Result<Spectrum, Self::Error> {
        let index = (unit as usize)
            .checked_sub(1)
            .ok_or(SimSpectrometerError::UnitZero)?
            % self.spectra.len();
        self.served += 1;
        self.spectra
            .get(index)
            .cloned()
            .ok_or(SimSpectrometerError::Empty)
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp, reason = "exact values served back")]
mod tests {
    use super::*;
    use dosegate_core::spectrum::Axis;

    #[test]
    fn serves_jcamp_files_in_unit_order_and_wraps() {
        let dir = tempfile::tempdir().unwrap();
        let axis = Axis::new(AxisUnit::Nanometre, vec![600.0, 602.0, 604.0]).unwrap();
        let mut paths = Vec::new();
        for i in 0..2 {
            let s = Spectrum::new(axis.clone(), vec![f64::from(i), 1.0, 2.0]).unwrap();
            let p = dir.path().join(format!("u{i}.jdx"));
            std::fs::write(&p, jcamp::write_xypoints("t", &s)).unwrap();
            paths.push(p);
        }
        let mut sim = FileSpectrometer::from_jcamp_files(&paths).unwrap();
        assert_eq!(sim.acquire(1).unwrap().values()[0], 0.0);
        assert_eq!(sim.acquire(2).unwrap().values()[0], 1.0);
        assert_eq!(sim.acquire(3).unwrap().values()[0], 0.0);
        assert!(matches!(
            sim.acquire(0),
            Err(SimSpectrometerError::UnitZero)
        ));
        assert_eq!(sim.served(), 3);
    }

    #[test]
    fn refuses_a_corrupt_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.jdx");
        std::fs::write(&p, "##TITLE=x\n##XUNITS=1/CM\n##END=\n").unwrap();
        assert!(matches!(
            FileSpectrometer::from_jcamp_files(&[p]),
            Err(SimSpectrometerError::Jcamp { .. })
        ));
    }
}

//! The spectrometer adapter. Benchtop NIR and Raman instruments are driven by their vendor
//! software, which exports each measurement as JCAMP-DX; the gateway reads those exports from a
//! drop folder, one file per unit (`<prefix><unit>.jdx`), size-capped and parsed by the core.
//!
//! It owns the folder and the file naming; it does not check the axis against a model (the model
//! does) and never modifies or deletes the instrument's files.

use std::path::{Path, PathBuf};

use dosegate_core::instrument::Spectrometer;
use dosegate_core::spectrum::Spectrum;

/// Why a spectrum could not be taken from the folder.
#[derive(Debug, thiserror::Error)]
pub enum DropFolderError {
    /// No export for that unit (yet).
    #[error("no spectrum {path} for unit {unit}")]
    Missing {
        /// Unit.
        unit: u32,
        /// Expected file.
        path: PathBuf,
    },
    /// The export could not be read or parsed.
    #[error("spectrum for unit {unit}: {message}")]
    Unreadable {
        /// Unit.
        unit: u32,
        /// What went wrong.
        message: String,
    },
}

/// Reads `<dir>/<prefix><unit>.jdx` for each unit.
#[derive(Debug, Clone)]
pub struct DropFolderSpectrometer {
    dir: PathBuf,
    prefix: String,
}

impl DropFolderSpectrometer {
    /// Watches `dir` for files named `<prefix><unit>.jdx`.
    pub fn new(dir: &Path, prefix: &str) -> Self {
        DropFolderSpectrometer {
            dir: dir.to_owned(),
            prefix: prefix.to_owned(),
        }
    }

    /// The file expected for `unit`.
    pub fn path_for(&self, unit: u32) -> PathBuf {
        self.dir.join(format!("{}{unit}.jdx", self.prefix))
    }
}

impl Spectrometer for DropFolderSpectrometer {
    type Error = DropFolderError;

    fn acquire(&mut self, unit: u32) -> Result<Spectrum, DropFolderError> {
        let path = self.path_for(unit);
        if !path.is_file() {
            return Err(DropFolderError::Missing { unit, path });
        }
        crate::spectra::read_jcamp(&path).map_err(|e| DropFolderError::Unreadable {
            unit,
            message: format!("{e:#}"),
        })
    }
}

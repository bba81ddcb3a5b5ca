//! Where the gateway keeps its continued-process-verification charts between jobs: one JSON file,
//! replaced atomically (write to a temporary file, fsync, rename) so a power cut leaves either the
//! old or the new state, never half of one.
//!
//! The charts themselves and their rules are `dosegate_core::cpv`; this module only loads and
//! saves them. Trend signals go to the ledger, not here.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use dosegate_core::cpv::ProcessVerification;

/// Largest state file accepted, bytes.
pub const MAX_STATE_BYTES: u64 = 1 << 20;

/// The state file.
#[derive(Debug, Clone)]
pub struct CpvStore {
    path: PathBuf,
}

impl CpvStore {
    /// A store at `path`.
    pub fn new(path: &Path) -> Self {
        CpvStore {
            path: path.to_owned(),
        }
    }

    /// Loads the charts; a missing file is an empty set of charts.
    pub fn load(&self) -> Result<ProcessVerification> {
        let meta = match std::fs::metadata(&self.path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(ProcessVerification::default());
            }
            Err(e) => return Err(e).with_context(|| format!("{}", self.path.display())),
        };
        if meta.len() > MAX_STATE_BYTES {
            bail!(
                "{} is larger than {MAX_STATE_BYTES} bytes",
                self.path.display()
            );
        }
        let text = std::fs::read_to_string(&self.path)
            .with_context(|| format!("reading {}", self.path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", self.path.display()))
    }

    /// Saves the charts atomically.
    pub fn save(&self, state: &ProcessVerification) -> Result<()> {
        let dir = self.path.parent().unwrap_or_else(|| Path::new("."));
        let mut tmp = tempfile::NamedTempFile::new_in(dir)
            .with_context(|| format!("temporary file in {}", dir.display()))?;
        tmp.write_all(serde_json::to_string_pretty(state)?.as_bytes())?;
        tmp.as_file().sync_all()?;
        tmp.persist(&self.path)
            .with_context(|| format!("replacing {}", self.path.display()))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dosegate_core::cpv::{Characteristic, ChartSpec, TrendChart};

    #[test]
    fn charts_survive_a_restart_and_keep_their_cusum() {
        let dir = tempfile::tempdir().unwrap();
        let store = CpvStore::new(&dir.path().join("cpv.json"));
        let mut pv = store.load().unwrap();
        let spec = ChartSpec {
            centre: 8.0,
            sigma: 0.1,
            spec_low: Some(7.4),
            spec_high: Some(8.6),
            cusum_k: 0.5,
            cusum_h: 5.0,
        };
        pv.set_chart(TrendChart::new(Characteristic::ContentPctWw, spec).unwrap());
        // A sustained +0.15 shift: CUSUM grows by 0.1 per unit and signals on the sixth.
        let mut signalled = None;
        for seq in 0..10u64 {
            if seq == 3 {
                store.save(&pv).unwrap();
                pv = store.load().unwrap();
            }
            if !pv
                .observe(Characteristic::ContentPctWw, seq, 8.15)
                .is_empty()
            {
                signalled = Some(seq);
                break;
            }
        }
        assert_eq!(signalled, Some(5));
    }

    #[test]
    fn refuses_an_oversized_state_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cpv.json");
        std::fs::write(
            &path,
            vec![b' '; usize::try_from(MAX_STATE_BYTES + 1).unwrap()],
        )
        .unwrap();
        assert!(CpvStore::new(&path).load().is_err());
    }
}

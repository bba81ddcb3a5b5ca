//! The lifecycle's devices as the running gateway has them: the printer on its serial port
//! ([`SerialPrintStation`]) and release testing from the spectrometer's drop folder, with the
//! balance when the spoke has one ([`DropFolderStation`]).
//!
//! The drop-folder handshake: after printing, the gateway writes `<drop>/<job>.request.json`
//! (job key and unit count; the instrument software imports it as its sample list) and waits for
//! one JCAMP-DX export per unit, `<drop>/<job>-<unit>.jdx`. Naming the job in every file means a
//! spectrum left from another job can never be taken for this one.

use std::path::PathBuf;
use std::time::Duration;

use dosegate_core::inference::ValidatedModel;
use dosegate_core::instrument::{Balance as _, Spectrometer as _, WeighMode};
use dosegate_core::job::VerifiedJob;
use dosegate_core::policy::Policy;
use dosegate_core::release::UnitMeasurement;
use dosegate_core::stream::StreamEvent;
use serde::Serialize;
use tracing::{info, warn};

use crate::balance::{MtSicsBalance, open_serial};
use crate::lifecycle::{BoxFuture, MeasureStation, Measurements, PrintReport, PrintStation};
use crate::printer::{PrinterSettings, print_job};
use crate::spectrometer::DropFolderSpectrometer;

/// The printer on a serial port, as the gateway configuration describes it.
#[derive(Debug, Clone)]
pub struct SerialPrintStation {
    /// Port, receive buffer, window and firmware baseline.
    pub settings: PrinterSettings,
}

impl PrintStation for SerialPrintStation {
    fn print<'a>(
        &'a mut self,
        job: &'a VerifiedJob,
        policy: &'a Policy,
        stop: BoxFuture<'a, ()>,
    ) -> BoxFuture<'a, Result<PrintReport, String>> {
        Box::pin(async move {
            let mut firmware = None;
            let mut last_logged = 0usize;
            let outcome = print_job(
                &self.settings,
                job,
                policy,
                |e, p| {
                    if matches!(e, StreamEvent::FirmwareIdentified { .. }) {
                        firmware = Some(e.clone());
                    }
                    if p.commands_acked >= last_logged + 1000 {
                        last_logged = p.commands_acked;
                        tracing::debug!(
                            acked = p.commands_acked,
                            total = p.commands_total,
                            "printing"
                        );
                    }
                },
                stop,
            )
            .await
            .map_err(|e| format!("[{}] {e}", e.code()))?;
            Ok(PrintReport {
                outcome: outcome.result,
                firmware,
                seconds: outcome.elapsed.as_secs_f64(),
            })
        })
    }
}

/// Release testing from the spectrometer's drop folder (and the balance, when configured).
#[derive(Debug, Clone)]
pub struct DropFolderStation {
    /// The drop folder.
    pub dir: PathBuf,
    /// How long to wait for all units' spectra.
    pub timeout: Duration,
    /// The balance's serial device, when the spoke has one.
    pub balance: Option<PathBuf>,
}

#[derive(Serialize)]
struct Request<'a> {
    job: &'a str,
    units: u32,
    files: Vec<String>,
}

impl DropFolderStation {
    /// The request file for `job`.
    pub fn request_path(&self, job: &str) -> PathBuf {
        self.dir.join(format!("{job}.request.json"))
    }

    fn write_request(&self, job: &str, units: u32) -> std::io::Result<()> {
        let request = Request {
            job,
            units,
            files: (1..=units).map(|u| format!("{job}-{u}.jdx")).collect(),
        };
        let path = self.request_path(job);
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(&request)?)?;
        std::fs::File::open(&tmp)?.sync_all()?;
        std::fs::rename(&tmp, &path)
    }
}

impl MeasureStation for DropFolderStation {
    fn measure<'a>(
        &'a mut self,
        job_key: &'a str,
        units: u32,
        model: Option<&'a ValidatedModel>,
    ) -> BoxFuture<'a, Measurements> {
        Box::pin(async move {
            let Some(model) = model else {
                return Measurements {
                    units: Vec::new(),
                    model: None,
                    incomplete: Some(
                        "the job names no PAT model: no unit can be released on-device".into(),
                    ),
                };
            };
            if let Err(e) = self.write_request(job_key, units) {
                return Measurements {
                    units: Vec::new(),
                    model: Some(model.id().clone()),
                    incomplete: Some(format!("cannot write the measurement request: {e}")),
                };
            }
            info!(job = job_key, units, dir = %self.dir.display(), "waiting for spectra");
            let mut spectrometer = DropFolderSpectrometer::new(&self.dir, &format!("{job_key}-"));
            let mut balance = match &self.balance {
                None => None,
                Some(path) => match open_serial(path) {
                    Ok(link) => Some(MtSicsBalance::new(link)),
                    Err(e) => {
                        warn!(error = %e, "balance unavailable: nominal masses are used");
                        None
                    }
                },
            };
            let deadline = tokio::time::Instant::now() + self.timeout;
            let mut measured = Vec::new();
            let mut incomplete = None;
            for unit in 1..=units {
                let path = spectrometer.path_for(unit);
                let left = deadline.saturating_duration_since(tokio::time::Instant::now());
                if !crate::lifecycle::wait_for_file(&path, left, Duration::from_millis(50)).await {
                    incomplete = Some(format!(
                        "no spectrum for unit {unit} within {:?}",
                        self.timeout
                    ));
                    break;
                }
                // The export is complete once the instrument has closed it; a partial file
                // fails to parse, so retry briefly before giving up on the unit.
                let mut spectrum = spectrometer.acquire(unit);
                for _ in 0..20 {
                    if spectrum.is_ok() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    spectrum = spectrometer.acquire(unit);
                }
                let spectrum = match spectrum {
                    Ok(s) => s,
                    Err(e) => {
                        incomplete = Some(format!("unit {unit}: {e}"));
                        break;
                    }
                };
                let mass_mg = balance
                    .as_mut()
                    .and_then(|b| match b.weigh(WeighMode::Stable) {
                        Ok(w) => Some(w.mass_mg),
                        Err(e) => {
                            warn!(unit, error = %e, "weighing failed: nominal mass used");
                            None
                        }
                    });
                measured.push(UnitMeasurement {
                    unit,
                    spectrum: model.predict(&spectrum),
                    mass_mg,
                });
            }
            Measurements {
                units: measured,
                model: Some(model.id().clone()),
                incomplete,
            }
        })
    }
}

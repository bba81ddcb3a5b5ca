//! `dosegate-spectrometer-sim`: the spoke's spectrometer software on a drop folder, serving real
//! spectra from a CSV in the shared layout (see `dosegate_instrument_sim::dropfolder`).
//!
//! Usage: dosegate-spectrometer-sim --drop DIR --csv FILE [--near PCT --within PCT] [--for SECONDS]
//!
//! Rows whose reference value lies within `--within` of `--near` are served in file order (all
//! rows without `--near`). It polls the folder every 50 ms until `--for` elapses (default: until
//! killed). Exit codes: 0 done; 1 bad usage or unreadable data; 2 a request could not be answered.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use dosegate_core::spectrum::{AxisUnit, csv};
use dosegate_instrument_sim::dropfolder::DropFolderInstrument;

struct Args {
    drop: PathBuf,
    csv: PathBuf,
    near: Option<f64>,
    within: f64,
    run_for: Option<Duration>,
}

const USAGE: &str = "usage: dosegate-spectrometer-sim --drop DIR --csv FILE [--near PCT --within PCT] [--for SECONDS]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let (mut drop, mut csv, mut near, mut within, mut run_for) = (None, None, None, 0.1, None);
    while let Some(flag) = it.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = it
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        let number = |v: &str| {
            v.parse::<f64>()
                .map_err(|_| format!("{flag} {v:?} is not a number"))
        };
        match flag.as_str() {
            "--drop" => drop = Some(PathBuf::from(value)),
            "--csv" => csv = Some(PathBuf::from(value)),
            "--near" => near = Some(number(&value)?),
            "--within" => within = number(&value)?,
            "--for" => run_for = Some(Duration::from_secs_f64(number(&value)?.max(0.0))),
            _ => return Err(format!("unknown option {flag}\n{USAGE}")),
        }
    }
    Ok(Args {
        drop: drop.ok_or(USAGE)?,
        csv: csv.ok_or(USAGE)?,
        near,
        within,
        run_for,
    })
}

fn main() -> ExitCode {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(1);
        }
    };
    let text = match std::fs::read_to_string(&args.csv) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dosegate-spectrometer-sim: {}: {e}", args.csv.display());
            return ExitCode::from(1);
        }
    };
    let table = match csv::parse(&text, AxisUnit::PerCentimetre) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("dosegate-spectrometer-sim: {}: {e}", args.csv.display());
            return ExitCode::from(1);
        }
    };
    let spectra: Vec<_> = table
        .rows()
        .iter()
        .filter(|r| match (args.near, r.reference) {
            (Some(n), Some(v)) => (v - n).abs() <= args.within,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .map(|r| {
            (
                format!("{} line {}", args.csv.display(), r.line),
                r.spectrum.clone(),
            )
        })
        .collect();
    eprintln!(
        "dosegate-spectrometer-sim: serving {} spectra on {}",
        spectra.len(),
        args.drop.display()
    );
    let mut instrument = match DropFolderInstrument::new(&args.drop, spectra) {
        Ok(i) => i,
        Err(e) => {
            eprintln!("dosegate-spectrometer-sim: {e}");
            return ExitCode::from(1);
        }
    };
    let started = Instant::now();
    loop {
        match instrument.poll() {
            Ok(answered) => {
                for a in answered {
                    let at_ms = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |d| d.as_millis());
                    eprintln!(
                        "dosegate-spectrometer-sim: job {}: {} spectra exported at_ms={at_ms}",
                        a.job,
                        a.files.len()
                    );
                }
            }
            Err(e) => {
                eprintln!("dosegate-spectrometer-sim: {e}");
                return ExitCode::from(2);
            }
        }
        if args.run_for.is_some_and(|d| started.elapsed() >= d) {
            return ExitCode::SUCCESS;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

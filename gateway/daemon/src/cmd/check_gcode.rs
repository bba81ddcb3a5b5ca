//! `dosegate check-gcode`: check a G-code file against a policy and a prescription, offline.
//!
//! It owns the file handling and the report's presentation: it streams the program in fixed
//! chunks through [`dosegate_core::policy::CallerHashedChecker`] (constant memory, whatever the
//! file size) and prints the verdict, every reason and the analysis. It decides nothing itself,
//! and it does not check signatures (that is `check-job`).
//!
//! Two threads: a reader reads the chunks and hashes them (SHA-256) while the calling thread
//! parses and checks the previous ones; at most [`DEPTH`] chunks are in flight, and their
//! buffers are recycled. The check itself runs on one thread.

use std::fs::File;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::mpsc;

use dosegate_core::policy::{CallerHashedChecker, Policy, ProgramReport};
use dosegate_core::prescription::Prescription;
use serde::Serialize;
use sha2::{Digest as _, Sha256};

/// Chunk size of the streaming read.
const CHUNK: usize = 256 * 1024;
/// Chunks read ahead of the check (memory: `DEPTH + 1` buffers of [`CHUNK`] bytes).
const DEPTH: usize = 3;
/// Largest policy or prescription file read.
const MAX_TOML_BYTES: u64 = 64 * 1024;

/// Check a G-code program against a design-space policy and a prescription.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Check a G-code program against a design-space policy and a prescription.\n\n\
The program is parsed strictly (what Marlin would execute, nothing ambiguous), run on a virtual \
printer (positions, extrusion, mass and dose, temperatures, speeds, layers, time) and compared \
with the policy's allowlist and ranges and with the prescription's dose window. Every reason to \
refuse is reported with a stable code, the source line, the value found and the limit.\n\n\
The file is read in chunks: memory use does not grow with its size.",
    after_help = "Examples:\n  \
dosegate check-gcode printlet.gcode --policy policies/fdm-hctz-printlet.toml \\\n      \
--prescription provisioning/examples/prescription-hctz.toml\n  \
dosegate check-gcode printlet.gcode --policy P.toml --prescription RX.toml --json | jq .verdict\n  \
cat printlet.gcode | dosegate check-gcode - --policy P.toml --prescription RX.toml\n\n\
Exit status:\n  0  accepted\n  1  rejected (reasons printed)\n  \
2  usage error, unreadable file, or invalid policy/prescription (error code printed:\n     \
E_READ_GCODE, E_READ_POLICY, E_POLICY_INVALID, E_READ_PRESCRIPTION, E_PRESCRIPTION_INVALID)"
)]
pub struct Args {
    /// The G-code file (`-` for standard input).
    file: PathBuf,
    /// The policy TOML (e.g. policies/fdm-hctz-printlet.toml).
    #[arg(long)]
    policy: PathBuf,
    /// The prescription TOML (e.g. provisioning/examples/prescription-hctz.toml).
    #[arg(long)]
    prescription: PathBuf,
    /// Print one JSON object instead of the human report.
    #[arg(long)]
    json: bool,
}

/// A usage or I/O failure, with its stable code.
#[derive(Debug, Serialize)]
struct Failure {
    code: &'static str,
    message: String,
}

fn fail(code: &'static str, message: String) -> Failure {
    Failure { code, message }
}

#[derive(Serialize)]
struct JsonReport<'a> {
    verdict: &'static str,
    policy: PolicyView<'a>,
    #[serde(flatten)]
    report: &'a ProgramReport,
}

#[derive(Serialize)]
struct PolicyView<'a> {
    id: &'a str,
    version: u32,
}

fn read_toml(path: &Path, read_code: &'static str) -> Result<String, Failure> {
    let file = File::open(path).map_err(|e| fail(read_code, format!("{}: {e}", path.display())))?;
    let mut text = String::new();
    file.take(MAX_TOML_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| fail(read_code, format!("{}: {e}", path.display())))?;
    if text.len() as u64 > MAX_TOML_BYTES {
        return Err(fail(
            read_code,
            format!("{}: larger than {MAX_TOML_BYTES} bytes", path.display()),
        ));
    }
    Ok(text)
}

fn check(args: &Args) -> Result<(Policy, ProgramReport), Failure> {
    let policy = Policy::from_toml(&read_toml(&args.policy, "E_READ_POLICY")?).map_err(|e| {
        fail(
            "E_POLICY_INVALID",
            format!("{}: {e}", args.policy.display()),
        )
    })?;
    let rx = Prescription::from_toml(&read_toml(&args.prescription, "E_READ_PRESCRIPTION")?)
        .map_err(|e| {
            fail(
                "E_PRESCRIPTION_INVALID",
                format!("{}: {e}", args.prescription.display()),
            )
        })?;
    let input: Box<dyn Read + Send> = if args.file.as_os_str() == "-" {
        Box::new(io::stdin())
    } else {
        Box::new(
            File::open(&args.file)
                .map_err(|e| fail("E_READ_GCODE", format!("{}: {e}", args.file.display())))?,
        )
    };
    let report = check_stream(input, CallerHashedChecker::new(&policy, &rx))
        .map_err(|e| fail("E_READ_GCODE", format!("{}: {e}", args.file.display())))?;
    Ok((policy, report))
}

/// Reads and hashes `input` on a reader thread while this thread checks the chunks read.
fn check_stream(
    mut input: Box<dyn Read + Send>,
    mut checker: CallerHashedChecker<'_>,
) -> io::Result<ProgramReport> {
    let (full_tx, full_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH);
    // Holds every buffer at once, so returning one never blocks.
    let (empty_tx, empty_rx) = mpsc::sync_channel::<Vec<u8>>(DEPTH + 1);
    for _ in 0..=DEPTH {
        empty_tx
            .send(vec![0u8; CHUNK])
            .map_err(|_| io::Error::other("buffer channel closed"))?;
    }
    std::thread::scope(|scope| {
        let reader = scope.spawn(move || -> io::Result<[u8; 32]> {
            let mut hasher = Sha256::new();
            while let Ok(mut buf) = empty_rx.recv() {
                buf.resize(CHUNK, 0);
                let n = loop {
                    match input.read(&mut buf) {
                        Ok(n) => break n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                };
                if n == 0 {
                    break;
                }
                buf.truncate(n);
                hasher.update(&buf);
                if full_tx.send(buf).is_err() {
                    break;
                }
            }
            Ok(hasher.finalize().into())
        });
        for buf in full_rx {
            checker.feed(&buf);
            // The reader may have finished already; the buffer is then dropped.
            let _ = empty_tx.send(buf);
        }
        let sha256 = reader
            .join()
            .map_err(|_| io::Error::other("the reader thread panicked"))??;
        Ok(checker.finish(sha256))
    })
}

fn print_human(out: &mut impl Write, policy: &Policy, r: &ProgramReport) -> io::Result<()> {
    let a = &r.analysis;
    let verdict = if r.accepted() { "ACCEPT" } else { "REJECT" };
    writeln!(
        out,
        "{verdict}  policy {} v{}  sha256 {}",
        policy.id(),
        policy.version(),
        r.sha256
    )?;
    for reason in &r.reasons {
        writeln!(out, "  - {reason}")?;
    }
    if r.reasons_omitted > 0 {
        writeln!(out, "  … and {} more reason(s)", r.reasons_omitted)?;
    }
    writeln!(out, "analysis:")?;
    writeln!(
        out,
        "  {} bytes, {} lines, {} commands",
        a.bytes, a.lines, a.commands
    )?;
    writeln!(
        out,
        "  filament {:.3} mm (net {:.3}, retracted {:.3} in {} moves)",
        a.filament_mm, a.net_filament_mm, a.retracted_mm, a.retractions
    )?;
    writeln!(
        out,
        "  mass {:.3} mg, API {:.4} mg, dose {:.4} mg per unit × {}",
        a.mass_mg, a.api_mg, a.dose_mg, a.units
    )?;
    writeln!(
        out,
        "  nozzle ≤ {} °C ({:.0} s on), bed ≤ {} °C, fan ≤ {}",
        a.max_nozzle_c, a.nozzle_on_s, a.max_bed_c, a.max_fan
    )?;
    writeln!(
        out,
        "  feed: print {:.1}…{:.1} mm/s, travel ≤ {:.1} mm/s; dwell {:.1} s",
        a.min_print_feed_mm_s, a.max_print_feed_mm_s, a.max_travel_feed_mm_s, a.dwell_s
    )?;
    if let Some(b) = a.bbox_extrude {
        writeln!(
            out,
            "  extruded within X {:.3}…{:.3} Y {:.3}…{:.3} Z {:.3}…{:.3}",
            b.min[0], b.max[0], b.min[1], b.max[1], b.min[2], b.max[2]
        )?;
    }
    writeln!(
        out,
        "  {} layers (first at {} mm), est. time {:.0} s",
        a.layers,
        a.first_layer_z_mm.map_or("-".into(), |z| z.to_string()),
        a.est_time_s
    )?;
    Ok(())
}

/// Runs the command; returns the documented exit code (every failure is reported here, with its
/// code, so the error path of `main` is never taken).
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    Ok(run_inner(args))
}

fn run_inner(args: &Args) -> ExitCode {
    let mut out = io::stdout().lock();
    match check(args) {
        Ok((policy, report)) => {
            let accepted = report.accepted();
            let written = if args.json {
                let view = JsonReport {
                    verdict: if accepted { "accept" } else { "reject" },
                    policy: PolicyView {
                        id: policy.id(),
                        version: policy.version(),
                    },
                    report: &report,
                };
                serde_json::to_writer(&mut out, &view)
                    .map_err(io::Error::other)
                    .and_then(|()| writeln!(out))
            } else {
                print_human(&mut out, &policy, &report)
            };
            if written.is_err() {
                return ExitCode::from(2);
            }
            if accepted {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            }
        }
        Err(f) => {
            if args.json {
                let _ = serde_json::to_writer(
                    &mut out,
                    &serde_json::json!({"verdict": "error", "error": f}),
                );
                let _ = writeln!(out);
            } else {
                let _ = writeln!(io::stderr(), "error {}: {}", f.code, f.message);
            }
            ExitCode::from(2)
        }
    }
}

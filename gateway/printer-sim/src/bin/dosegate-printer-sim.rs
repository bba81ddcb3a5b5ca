//! `dosegate-printer-sim`: serves the simulated Marlin printer on a pseudo-terminal, so the
//! gateway (or OctoPrint, or a person with `screen`) can open it like a USB serial port.
//!
//! The binary only moves bytes between the pty and [`dosegate_printer_sim::Printer`] in real
//! time; all behaviour is in the library.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use clap::Parser;
use dosegate_printer_sim::{Faults, PtyPrinter, SimConfig};

/// Serve a Marlin-faithful simulated printer on a pseudo-terminal.
#[derive(Debug, Parser)]
#[command(
    name = "dosegate-printer-sim",
    version,
    long_about = "Serves a Marlin-faithful simulated printer on a pseudo-terminal. It checks line numbers \
and checksums, flushes its 128-byte receive buffer and asks for a resend on an error, drops bytes \
that overflow it, answers `ok N P B` (ADVANCED_OK), blocks during M109/M190 while reporting \
temperatures, auto-reports with M155, halts on M112 (emergency parser), and injects faults on \
request. It prints the pty path on stdout and links it at --link.",
    after_help = "Examples:\n  dosegate-printer-sim --link build/ttySIM\n  dosegate-printer-sim --link build/ttySIM --latency-ms 16 --no-advanced-ok\n  dosegate-printer-sim --link build/ttySIM --corrupt-per-mille 25 --resend-per-mille 25 --exec-log build/exec.log\n\nExit codes: 0 stopped by a signal or a simulated disconnect; 1 could not set up the pty."
)]
#[expect(
    clippy::struct_excessive_bools,
    reason = "each flag is one independent command-line switch"
)]
struct Args {
    /// Symlink to create at this path, pointing at the pty.
    #[arg(long)]
    link: Option<PathBuf>,
    /// Delay every printer→host line by this much (a USB-serial latency timer), ms.
    #[arg(long, default_value_t = 0.0)]
    latency_ms: f64,
    /// Build without ADVANCED_OK (plain `ok`).
    #[arg(long)]
    no_advanced_ok: bool,
    /// Build without AUTOREPORT_TEMP.
    #[arg(long)]
    no_autoreport: bool,
    /// Build without EMERGENCY_PARSER.
    #[arg(long)]
    no_emergency_parser: bool,
    /// Receive buffer, bytes.
    #[arg(long, default_value_t = 128)]
    rx_buffer: usize,
    /// Time each move takes once planned, ms (0: no motion).
    #[arg(long, default_value_t = 0.0)]
    move_time_ms: f64,
    /// Heating rate, °C/s.
    #[arg(long, default_value_t = 50.0)]
    heat_rate: f64,
    /// Corrupt this many lines per thousand.
    #[arg(long, default_value_t = 0)]
    corrupt_per_mille: u32,
    /// Reject this many intact lines per thousand with a resend request.
    #[arg(long, default_value_t = 0)]
    resend_per_mille: u32,
    /// Drop the tail of this many lines per thousand.
    #[arg(long, default_value_t = 0)]
    drop_per_mille: u32,
    /// Omit the `ok` of this many commands per thousand.
    #[arg(long, default_value_t = 0)]
    omit_ok_per_mille: u32,
    /// Seed for the fault rates.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// After this many executed commands, drift the hot end by --drift-rate °C/s.
    #[arg(long)]
    drift_after: Option<u64>,
    /// Drift rate, °C/s.
    #[arg(long, default_value_t = 0.5)]
    drift_rate: f64,
    /// Answer M115 with this firmware name and no capabilities (a lying or different firmware).
    #[arg(long)]
    lie_m115: Option<String>,
    /// Steps/mm of the extruder reported by M503.
    #[arg(long, default_value_t = 93.0)]
    steps_per_mm_e: f64,
    /// Append every executed G0/G1 (or every command with --exec-log-all) to this file.
    #[arg(long)]
    exec_log: Option<PathBuf>,
    /// Log every executed command, not only moves.
    #[arg(long)]
    exec_log_all: bool,
}

fn main() -> ExitCode {
    match serve(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("dosegate-printer-sim: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn config(a: &Args) -> SimConfig {
    SimConfig {
        advanced_ok: !a.no_advanced_ok,
        autoreport_temp: !a.no_autoreport,
        emergency_parser: !a.no_emergency_parser,
        rx_buffer: a.rx_buffer,
        move_time: Duration::from_secs_f64(a.move_time_ms.max(0.0) / 1000.0),
        heat_rate_c_per_s: a.heat_rate,
        m115_override: a
            .lie_m115
            .as_ref()
            .map(|n| vec![format!("FIRMWARE_NAME:{n} PROTOCOL_VERSION:1.0")]),
        steps_per_mm_e: a.steps_per_mm_e,
        faults: Faults {
            seed: a.seed,
            corrupt_per_mille: a.corrupt_per_mille,
            resend_per_mille: a.resend_per_mille,
            drop_per_mille: a.drop_per_mille,
            omit_ok_per_mille: a.omit_ok_per_mille,
            drift: a.drift_after.map(|n| (n, a.drift_rate)),
            ..Faults::default()
        },
        ..SimConfig::default()
    }
}

fn serve(a: &Args) -> anyhow::Result<()> {
    let latency = Duration::from_secs_f64(a.latency_ms.max(0.0) / 1000.0);
    let sim = PtyPrinter::spawn(config(a), latency).context("cannot open a pty")?;
    if let Some(link) = &a.link {
        let _ = std::fs::remove_file(link);
        std::os::unix::fs::symlink(sim.path(), link)
            .with_context(|| format!("symlink {}", link.display()))?;
    }
    println!("{}", sim.path().display());
    std::io::stdout().flush()?;
    let mut log = match &a.exec_log {
        Some(p) => Some(std::io::BufWriter::new(
            std::fs::File::create(p).with_context(|| format!("{}", p.display()))?,
        )),
        None => None,
    };
    let mut logged = 0usize;
    loop {
        std::thread::sleep(Duration::from_millis(20));
        if let Some(w) = log.as_mut() {
            let executed = sim.executed();
            for e in executed.iter().skip(logged) {
                if a.exec_log_all || e.command.starts_with("G0 ") || e.command.starts_with("G1 ") {
                    writeln!(w, "{}", e.command)?;
                }
            }
            logged = executed.len();
            w.flush()?;
        }
        if sim.is_finished() {
            if sim.is_disconnected() {
                eprintln!("dosegate-printer-sim: simulated disconnect");
            }
            return Ok(());
        }
    }
}

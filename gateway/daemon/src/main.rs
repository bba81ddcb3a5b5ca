//! `dosegate`: the gateway daemon and the commands its operators run by hand.
//!
//! `main` only parses arguments, installs logging and dispatches; the work is in modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use dosegate::cmd;

/// DoseGate gateway: accepts only hub-signed print jobs, checks them against the product's
/// validated design space, and records every step in a signed ledger.
#[derive(Debug, Parser)]
#[command(name = "dosegate", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a signed job as the gateway would (exit 0 accept, 1 reject, 2 error).
    CheckJob(cmd::check_job::Args),
    /// Verify, recover or exercise the signed, hash-chained release ledger.
    Ledger(cmd::ledger::Args),
    /// Predict drug content from spectra with a PAT model: prediction, T², Q, domain.
    Predict(cmd::predict::Args),
    /// Check a G-code file against a policy and a prescription (exit 0 accept, 1 reject, 2 error).
    CheckGcode(cmd::check_gcode::Args),
    /// The fleet link: deliver ledger records to the hub over mTLS MQTT until receipted.
    Fleet(cmd::fleet::Args),
    /// Run the gateway until stopped (the mode dosegate.service starts).
    Run(cmd::run::Args),
    /// Stream a verified job to the printer by hand (exit 0 printed, 1 refused, 2 error, 3 aborted).
    Print(cmd::print::Args),
    /// Is this boot good? Fresh status, broker connected, printer link up (exit 0 healthy).
    Health(cmd::health::Args),
    /// Install a signed update bundle into the inactive A/B slot (exit 0 installed).
    Update(cmd::update::Args),
    /// The TPM identity: write the enrollment request (AK + mTLS client key) for the hub.
    Tpm(cmd::tpm::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::CheckJob(args) => cmd::check_job::run(args),
        Command::Ledger(args) => cmd::ledger::run(args),
        Command::Predict(args) => cmd::predict::run(args),
        Command::CheckGcode(args) => cmd::check_gcode::run(args),
        Command::Fleet(args) => cmd::fleet::run(args),
        Command::Run(args) => cmd::run::run(args),
        Command::Print(args) => cmd::print::run(args),
        Command::Health(args) => cmd::health::run(args),
        Command::Update(args) => cmd::update::run(args),
        Command::Tpm(args) => cmd::tpm::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("dosegate: error: {e:#}");
            ExitCode::from(2)
        }
    }
}

//! `dosegate`: the gateway daemon and the commands its operators run by hand.
//!
//! `main` only parses arguments, installs logging and dispatches; the work is in modules.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod cmd;
mod notify;

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
    Run(cmd::run::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Run(args) => cmd::run::main(&args),
    }
}

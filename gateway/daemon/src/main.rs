//! `dosegate`: the gateway daemon and the commands its operators run by hand.
//!
//! `main` only parses arguments, installs logging and dispatches; the work is in modules.

use std::process::ExitCode;

use clap::Parser;

/// DoseGate gateway: accepts only hub-signed print jobs, checks them against the product's
/// validated design space, and records every step in a signed ledger.
#[derive(Debug, Parser)]
#[command(name = "dosegate", version, about, long_about = None)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}

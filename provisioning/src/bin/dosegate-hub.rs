//! `dosegate-hub`: the hub operators' tool (PKI, signing jobs, policies and models).

use std::process::ExitCode;

use clap::Parser;

/// DoseGate hub tool: keys, trust root, signed jobs.
#[derive(Debug, Parser)]
#[command(name = "dosegate-hub", version, about, long_about = None)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    ExitCode::SUCCESS
}

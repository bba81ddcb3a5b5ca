//! `dosegate tpm`: the gateway's TPM identity for enrollment at the hub.
//!
//! `enroll-request` opens the TPM (creating the SRK, AK, event key and mTLS client key on first
//! use), and writes the enrollment request the field engineer carries to `dosegate-hub fleet
//! enroll --request FILE`: the AK's public area and the mTLS key's public key, with the mTLS
//! key's proof of possession (see `dosegate_core::fleet::enroll`). No private key leaves the TPM.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context as _, Result};
use dosegate_core::fleet::GatewayId;
use dosegate_core::fleet::enroll::build_request;
use dosegate_core::ledger::verify::DEFAULT_APP_PCR;
use serde_json::json;

use crate::tpm::{Handles, Tpm, TpmConfig};

/// TPM identity commands.
#[derive(Debug, clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: TpmCommand,
}

#[derive(Debug, clap::Subcommand)]
enum TpmCommand {
    EnrollRequest(EnrollRequestArgs),
}

/// Write this gateway's enrollment request (AK + mTLS client key, both TPM-held) for the hub.
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Write this gateway's enrollment request: the attestation key's TPM public area \
and the mTLS client key's public key, signed by the mTLS key (proof of possession). The keys are \
created in the TPM on first use and never leave it. Carry the file to the hub, where \
`dosegate-hub fleet enroll --hub HUB --gateway-id ID --request FILE` checks it, issues the client \
certificate for the TPM-held key and keeps the AK to verify this gateway's quotes.",
    after_help = "\
Exit status: 0 written, 2 error (TPM unreachable, bad gateway id, I/O).

Examples:
  dosegate tpm enroll-request --tpm device:/dev/tpmrm0 --gateway-id spoke-01 --out spoke-01.enroll
  dosegate tpm enroll-request --tpm swtpm:host=127.0.0.1,port=2321 --gateway-id dev-01 --out r --json"
)]
pub struct EnrollRequestArgs {
    /// The gateway id ([a-z0-9-], 1..64): the certificate's CN and MQTT client id.
    #[arg(long, value_name = "ID")]
    gateway_id: String,
    /// The TPM's TCTI.
    #[arg(long, value_name = "TCTI", default_value = "device:/dev/tpmrm0")]
    tpm: String,
    /// The application PCR.
    #[arg(long, value_name = "PCR", default_value_t = DEFAULT_APP_PCR)]
    app_pcr: u8,
    /// Where to write the request (CBOR).
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Print the key ids as JSON.
    #[arg(long)]
    json: bool,
}

/// Runs `dosegate tpm …`.
pub fn run(args: &Args) -> Result<ExitCode> {
    match &args.command {
        TpmCommand::EnrollRequest(a) => enroll_request(a),
    }
}

fn enroll_request(args: &EnrollRequestArgs) -> Result<ExitCode> {
    let gw = GatewayId::new(&args.gateway_id).context("--gateway-id")?;
    let tpm = std::sync::Arc::new(
        Tpm::open(&TpmConfig {
            tcti: args.tpm.clone(),
            app_pcr: args.app_pcr,
            handles: Handles::default(),
        })
        .context("cannot open the TPM")?,
    );
    let request = write_enroll_request(&tpm, &gw)?;
    std::fs::write(&args.out, &request)
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    let ak = tpm.ak_public().key_id().to_hex();
    let tls = tpm.tls_public().key_id().to_hex();
    let mut out = std::io::stdout();
    if args.json {
        let _ = writeln!(
            out,
            "{}",
            json!({"gateway": gw.as_str(), "request": args.out, "ak": ak, "tls_key": tls})
        );
    } else {
        let _ = writeln!(
            out,
            "enrollment request for {gw} written to {}\n  attestation key {ak}\n  mTLS client key {tls}\n\
             next, at the hub: dosegate-hub fleet enroll --hub HUB --gateway-id {gw} --request {}",
            args.out.display(),
            args.out.display()
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// The enrollment request of this TPM's identity for gateway `gw` (the AK's public area, the mTLS
/// key, signed by the mTLS key).
pub fn write_enroll_request(tpm: &std::sync::Arc<Tpm>, gw: &GatewayId) -> Result<Vec<u8>> {
    let area = tpm.ak_public_area()?;
    let signer = tpm.tls_signer();
    Ok(build_request(gw, &tpm.ak_public(), &area, signer.as_ref())?)
}

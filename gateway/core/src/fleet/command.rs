//! The hub's commands to one gateway, carried on `spoke/{gw}/down/cmd`.
//!
//! A command is a small deterministic-CBOR map `{v, op}` ([`HubCommand`]), at most
//! [`MAX_COMMAND_BYTES`]. Commands are not signed: the broker's ACL lets only the hub write to a
//! gateway's `down/` topics, and none of them can make the gateway accept anything: an
//! attestation nonce is answered with a TPM quote, resend-from and rebirth only re-send what the
//! gateway already publishes, and an abort stops a print (the safe direction), recorded in the
//! ledger. Jobs, receipts and metadata, which do carry authority, are signed. Does no I/O.

use serde::{Deserialize, Serialize};

use super::FLEET_FORMAT_VERSION;
use crate::cbor::{self, CborError};

/// Largest command accepted, bytes.
pub const MAX_COMMAND_BYTES: usize = 256;
/// Longest job id named by an abort, bytes.
pub const MAX_JOB_ID_LEN: usize = 64;

/// What the hub asks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Command {
    /// Answer with a TPM quote over this nonce on `up/attest`.
    Attest(#[serde(with = "serde_bytes")] [u8; 32]),
    /// Re-send every ledger entry from this seq on.
    ResendFrom(u64),
    /// Abort the named job if it is printing.
    Abort(String),
    /// Publish the birth message again.
    Rebirth,
}

/// A command with its format version. Fields are in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubCommand {
    /// Format version.
    pub v: u8,
    /// The command.
    pub op: Command,
}

/// Why a command was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// Not a valid command encoding (includes the size cap).
    #[error("command: {0}")]
    Cbor(#[from] CborError),
    /// Unsupported format version.
    #[error("command format version {found} (expected {FLEET_FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u8,
    },
    /// An abort names an empty or over-long job id.
    #[error("abort names a job id of {len} bytes (must be 1..={MAX_JOB_ID_LEN})")]
    JobId {
        /// Its length.
        len: usize,
    },
}

impl HubCommand {
    /// A command of the current format version.
    pub fn new(op: Command) -> Self {
        Self {
            v: FLEET_FORMAT_VERSION,
            op,
        }
    }

    /// Encodes the command.
    pub fn to_cbor(&self) -> Result<Vec<u8>, CommandError> {
        self.check()?;
        Ok(cbor::to_vec(self)?)
    }

    /// Decodes and checks a command received on `down/cmd`.
    pub fn decode(bytes: &[u8]) -> Result<Self, CommandError> {
        let cmd: Self = cbor::from_slice(bytes, MAX_COMMAND_BYTES)?;
        cmd.check()?;
        Ok(cmd)
    }

    fn check(&self) -> Result<(), CommandError> {
        if self.v != FLEET_FORMAT_VERSION {
            return Err(CommandError::Version { found: self.v });
        }
        if let Command::Abort(job) = &self.op
            && (job.is_empty() || job.len() > MAX_JOB_ID_LEN)
        {
            return Err(CommandError::JobId { len: job.len() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_command_round_trips() {
        for op in [
            Command::Attest([7; 32]),
            Command::ResendFrom(42),
            Command::Abort("spoke-01-3-abcdef01".into()),
            Command::Rebirth,
        ] {
            let cmd = HubCommand::new(op);
            let bytes = cmd.to_cbor().unwrap();
            assert!(bytes.len() <= MAX_COMMAND_BYTES);
            assert_eq!(HubCommand::decode(&bytes).unwrap(), cmd);
        }
    }

    #[test]
    fn refuses_oversized_unknown_and_wrong_version_commands() {
        assert!(matches!(
            HubCommand::decode(&[0u8; 300]),
            Err(CommandError::Cbor(CborError::TooLarge { len: 300, .. }))
        ));
        let future = HubCommand {
            v: 2,
            op: Command::Rebirth,
        };
        let bytes = cbor::to_vec(&future).unwrap();
        assert_eq!(
            HubCommand::decode(&bytes),
            Err(CommandError::Version { found: 2 })
        );
        // {"v": 1, "op": "reboot"}: an operation the gateway does not know.
        let unknown = ciborium::Value::Map(vec![
            (
                ciborium::Value::Text("v".into()),
                ciborium::Value::Integer(1.into()),
            ),
            (
                ciborium::Value::Text("op".into()),
                ciborium::Value::Text("reboot".into()),
            ),
        ]);
        let bytes = cbor::to_vec(&unknown).unwrap();
        assert!(matches!(
            HubCommand::decode(&bytes),
            Err(CommandError::Cbor(CborError::Malformed { .. }))
        ));
    }

    #[test]
    fn refuses_abort_without_a_job_id() {
        let bytes = cbor::to_vec(&HubCommand::new(Command::Abort(String::new()))).unwrap();
        assert_eq!(
            HubCommand::decode(&bytes),
            Err(CommandError::JobId { len: 0 })
        );
    }
}

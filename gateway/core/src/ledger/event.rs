//! What a ledger entry records: a job transition or a gateway event, and the job state machine.
//!
//! Job events follow `received → verified → printing → printed → measured → released | rejected |
//! quarantined`, with `aborted` from `printing` (or `verified`, when a job is withdrawn before
//! printing starts) and `rejected` from any pre-print or measurement stage. The body is CBOR that
//! the job modules fill (reasons with evidence, measurements, predictions); the ledger only bounds
//! its size. Gateway events (start, insecure mode, trust updates) carry no job id. No I/O here.

use serde::{Deserialize, Serialize};

/// The kind of a ledger event.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum EventKind {
    /// A signed job arrived.
    Received,
    /// The job, its G-code and its design space verified.
    Verified,
    /// Streaming to the printer started.
    Printing,
    /// The printer finished every command.
    Printed,
    /// The printed units were measured (spectra, predictions, mass).
    Measured,
    /// The units meet their release criteria.
    Released,
    /// The job or its units failed a check; the body names the reason codes and evidence.
    Rejected,
    /// Cannot be decided on-device (e.g. spectrum outside the model domain); held for the QP.
    Quarantined,
    /// Printing was stopped (deviation, emergency stop, hub abort).
    Aborted,
    /// The gateway started; the body is a [`StartBody`] declaring its keys.
    GatewayStart,
    /// The gateway runs in insecure development mode (software key, no TPM).
    InsecureMode,
    /// A new hub trust root, policy or model became active; the body names it.
    TrustUpdated,
}

impl EventKind {
    /// The job stage this kind moves a job to, or `None` for gateway events.
    pub fn stage(self) -> Option<JobStage> {
        Some(match self {
            Self::Received => JobStage::Received,
            Self::Verified => JobStage::Verified,
            Self::Printing => JobStage::Printing,
            Self::Printed => JobStage::Printed,
            Self::Measured => JobStage::Measured,
            Self::Released => JobStage::Released,
            Self::Rejected => JobStage::Rejected,
            Self::Quarantined => JobStage::Quarantined,
            Self::Aborted => JobStage::Aborted,
            Self::GatewayStart | Self::InsecureMode | Self::TrustUpdated => return None,
        })
    }

    /// The kebab-case name used in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Received => "received",
            Self::Verified => "verified",
            Self::Printing => "printing",
            Self::Printed => "printed",
            Self::Measured => "measured",
            Self::Released => "released",
            Self::Rejected => "rejected",
            Self::Quarantined => "quarantined",
            Self::Aborted => "aborted",
            Self::GatewayStart => "gateway-start",
            Self::InsecureMode => "insecure-mode",
            Self::TrustUpdated => "trust-updated",
        }
    }
}

/// Where a job is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum JobStage {
    /// Arrived.
    Received,
    /// Checked.
    Verified,
    /// Being printed.
    Printing,
    /// Printed.
    Printed,
    /// Measured.
    Measured,
    /// Released (final).
    Released,
    /// Rejected (final).
    Rejected,
    /// Quarantined (final).
    Quarantined,
    /// Aborted (final).
    Aborted,
}

impl JobStage {
    /// Whether a job at `from` (or not yet seen, `None`) may move to `to`.
    pub fn allows(from: Option<Self>, to: Self) -> bool {
        use JobStage::{
            Aborted, Measured, Printed, Printing, Quarantined, Received, Rejected, Released,
            Verified,
        };
        matches!(
            (from, to),
            (None, Received)
                | (Some(Received), Verified | Rejected)
                | (Some(Verified), Printing | Rejected | Aborted)
                | (Some(Printing), Printed | Aborted)
                | (Some(Printed), Measured | Rejected)
                | (Some(Measured), Released | Rejected | Quarantined)
        )
    }
}

/// One event: its kind, the job it concerns (job events only) and a CBOR body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// The job id (job events), `None` for gateway events.
    pub job: Option<String>,
    /// Deterministic CBOR filled by the module that emits the event.
    #[serde(with = "serde_bytes")]
    pub body: Vec<u8>,
    /// What happened.
    pub kind: EventKind,
}

/// The body of a [`EventKind::GatewayStart`] event: the keys that sign what follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartBody {
    /// The attestation key (SEC1), absent in insecure mode.
    #[serde(with = "serde_bytes")]
    pub ak: Option<Vec<u8>>,
    /// The event-signing key (SEC1).
    #[serde(with = "serde_bytes")]
    pub key: Vec<u8>,
    /// The gateway software version.
    pub ver: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lifecycle_accepts_the_documented_paths_only() {
        use JobStage::*;
        let happy = [Received, Verified, Printing, Printed, Measured, Released];
        let mut at = None;
        for s in happy {
            assert!(JobStage::allows(at, s), "{at:?} → {s:?}");
            at = Some(s);
        }
        assert!(JobStage::allows(Some(Printing), Aborted));
        assert!(JobStage::allows(Some(Measured), Quarantined));
        assert!(
            !JobStage::allows(Some(Received), Printing),
            "skips verification"
        );
        assert!(!JobStage::allows(Some(Released), Received), "replayed job");
        assert!(
            !JobStage::allows(None, Released),
            "released without history"
        );
        assert!(
            !JobStage::allows(Some(Rejected), Printing),
            "printing after reject"
        );
    }
}

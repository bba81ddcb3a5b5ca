//! Answering the hub's attestation challenge: `Inbound::Attest(nonce)` from the fleet link →
//! a TPM quote over the application PCR with the nonce as qualifying data, plus the event log →
//! the `up/attest` payload ([`dosegate_core::fleet::AttestAnswer`]), which the caller hands back
//! to the link as `mqtt::Outbound::Attest`.
//!
//! Works on any [`GatewayKeys`] (the TPM in production); an identity without a quoter (the
//! insecure development mode) cannot answer, and says so instead of sending an unverifiable
//! answer. The format and the hub's checks are in `dosegate_core::fleet::attest`.

use dosegate_core::envelope::SignError;
use dosegate_core::fleet::{AttestAnswer, AttestAnswerError, GatewayId};

use crate::ledger::GatewayKeys;

/// Why no answer could be built.
#[derive(Debug, thiserror::Error)]
pub enum AttestError {
    /// This identity has no TPM (insecure development mode): nothing to quote with.
    #[error("no TPM quoter (insecure development mode): cannot answer an attestation challenge")]
    NoQuoter,
    /// The TPM refused or failed the quote.
    #[error("TPM quote failed: {0}")]
    Quote(#[from] SignError),
    /// The answer could not be encoded (event log too long).
    #[error("attestation answer: {0}")]
    Encode(#[from] AttestAnswerError),
}

/// Builds the `up/attest` payload for `nonce`: a quote of the application PCR by the AK over the
/// nonce, with the event log that replays to the PCR's value.
///
/// The log is read before the quote; the caller must not extend the PCR concurrently (the
/// lifecycle measures at start and on policy/model changes, in the same task that answers).
pub fn answer_challenge(
    keys: &dyn GatewayKeys,
    gateway: &GatewayId,
    nonce: &[u8; 32],
) -> Result<Vec<u8>, AttestError> {
    let quoter = keys.quoter().ok_or(AttestError::NoQuoter)?;
    let log = keys.event_log();
    let quote = quoter.quote(nonce)?;
    Ok(AttestAnswer::new(gateway.clone(), *nonce, keys.app_pcr(), log, quote).to_cbor()?)
}

#[cfg(test)]
mod tests {
    use dosegate_core::envelope::SoftwareKey;

    use super::*;
    use crate::ledger::InsecureIdentity;

    #[test]
    fn the_insecure_development_identity_cannot_answer() {
        let keys = InsecureIdentity::new(SoftwareKey::from_bytes(&[7; 32]).unwrap());
        let gw = GatewayId::new("dev-01").unwrap();
        assert!(matches!(
            answer_challenge(&keys, &gw, &[1; 32]),
            Err(AttestError::NoQuoter)
        ));
    }
}

//! Reading the routing fields of a sealed ledger record as it travels on `up/evt`.
//!
//! The message on `up/evt` is the ledger record itself: the tagged `COSE_Sign1` the gateway
//! sealed (content type `LedgerEntry` or `Checkpoint`), byte for byte. The hub needs its `gw`,
//! `seq` and `prev` fields and the SHA-256 of the whole record to route it, de-duplicate it and
//! check that it chains, before (and independently of) the ledger verifier checking the gateway's
//! signature and the event itself. This module reads only those fields, from a generic CBOR map,
//! so it stays valid whatever else the record format carries. Does no I/O.

use coset::cbor::value::Value;
use sha2::{Digest, Sha256};

use super::{GatewayId, MAX_EVENT_MESSAGE_BYTES, topic::TopicError};
use crate::envelope::{self, ContentType, EnvelopeError};

/// The routing fields of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EntryHeader {
    /// Position in the gateway's chain.
    pub seq: u64,
    /// SHA-256 of the previous record (zeros for seq 0).
    pub prev: [u8; 32],
    /// SHA-256 of this record's bytes.
    pub hash: [u8; 32],
}

/// Why a record's routing fields could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// Not a ledger entry or checkpoint envelope.
    #[error("event envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The payload is not a CBOR map.
    #[error("event payload is not a CBOR map")]
    NotAMap,
    /// A routing field is missing or has the wrong type.
    #[error("event payload field {field:?} missing or mistyped")]
    Field {
        /// The field.
        field: &'static str,
    },
    /// The record names an invalid gateway id.
    #[error("event gateway id: {0}")]
    Gateway(#[from] TopicError),
    /// The record names another gateway than the topic it came on.
    #[error("event of gateway {found} published on the topic of {topic}")]
    WrongGateway {
        /// The gateway of the topic.
        topic: GatewayId,
        /// The gateway in the record.
        found: GatewayId,
    },
}

/// Reads `gw`, `seq` and `prev` of a sealed record received on `topic_gateway`'s `up/evt`.
pub fn entry_header(bytes: &[u8], topic_gateway: &GatewayId) -> Result<EntryHeader, WireError> {
    let env = match envelope::decode(bytes, ContentType::LedgerEntry, MAX_EVENT_MESSAGE_BYTES) {
        Err(EnvelopeError::WrongContentType { .. }) => {
            envelope::decode(bytes, ContentType::Checkpoint, MAX_EVENT_MESSAGE_BYTES)?
        }
        other => other?,
    };
    let value: Value =
        coset::cbor::de::from_reader(env.unverified_payload()).map_err(|_| WireError::NotAMap)?;
    let Value::Map(entries) = value else {
        return Err(WireError::NotAMap);
    };
    let field = |name: &'static str| {
        entries
            .iter()
            .find(|(k, _)| k.as_text() == Some(name))
            .map(|(_, v)| v)
            .ok_or(WireError::Field { field: name })
    };
    let gw = field("gw")?
        .as_text()
        .ok_or(WireError::Field { field: "gw" })?;
    let gw = GatewayId::new(gw)?;
    if gw != *topic_gateway {
        return Err(WireError::WrongGateway {
            topic: topic_gateway.clone(),
            found: gw,
        });
    }
    let seq = field("seq")?
        .as_integer()
        .and_then(|i| u64::try_from(i).ok())
        .ok_or(WireError::Field { field: "seq" })?;
    let prev: [u8; 32] = field("prev")?
        .as_bytes()
        .and_then(|b| b.as_slice().try_into().ok())
        .ok_or(WireError::Field { field: "prev" })?;
    Ok(EntryHeader {
        seq,
        prev,
        hash: Sha256::digest(bytes).into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cbor;
    use crate::envelope::SoftwareKey;

    fn record(gw: &str, seq: u64, prev: [u8; 32]) -> Vec<u8> {
        let payload = Value::Map(vec![
            (Value::Text("v".into()), Value::Integer(1.into())),
            (Value::Text("gw".into()), Value::Text(gw.into())),
            (Value::Text("seq".into()), Value::Integer(seq.into())),
            (Value::Text("prev".into()), Value::Bytes(prev.to_vec())),
        ]);
        let key = SoftwareKey::from_bytes(&[5; 32]).unwrap();
        envelope::sign(
            ContentType::LedgerEntry,
            &cbor::to_vec(&payload).unwrap(),
            &[&key],
        )
        .unwrap()
    }

    #[test]
    fn reads_seq_prev_and_hash_of_a_sealed_record() {
        let gw = GatewayId::new("spoke-01").unwrap();
        let bytes = record("spoke-01", 7, [3; 32]);
        let h = entry_header(&bytes, &gw).unwrap();
        assert_eq!(h.seq, 7);
        assert_eq!(h.prev, [3; 32]);
        assert_eq!(h.hash, <[u8; 32]>::from(Sha256::digest(&bytes)));
    }

    #[test]
    fn refuses_a_record_of_another_gateway_on_this_topic() {
        let gw = GatewayId::new("spoke-01").unwrap();
        let bytes = record("spoke-02", 0, [0; 32]);
        assert!(matches!(
            entry_header(&bytes, &gw),
            Err(WireError::WrongGateway { .. })
        ));
    }

    #[test]
    fn refuses_a_receipt_posing_as_an_event() {
        let gw = GatewayId::new("spoke-01").unwrap();
        let key = SoftwareKey::from_bytes(&[5; 32]).unwrap();
        let bytes = envelope::sign(ContentType::Receipt, &[0xa0], &[&key]).unwrap();
        assert!(matches!(
            entry_header(&bytes, &gw),
            Err(WireError::Envelope(EnvelopeError::WrongContentType { .. }))
        ));
    }
}

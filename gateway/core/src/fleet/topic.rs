//! Topic names of the fleet link and their parsing.
//!
//! Owns the mapping between [`Topic`] values and the strings of DESIGN.md ("Fleet link"), and the
//! [`GatewayId`] newtype that every per-gateway topic embeds. A gateway id is also the CN of the
//! gateway's client certificate and its MQTT username, so it is restricted to `[a-z0-9-]`, 1 to 64
//! bytes, not starting or ending with `-`: no `+`, `#`, `/` or other character that could widen an
//! ACL pattern. Does no I/O.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest gateway id, bytes.
pub const MAX_GATEWAY_ID_LEN: usize = 64;
/// Longest topic accepted for parsing, bytes.
pub const MAX_TOPIC_LEN: usize = 128;

/// Why a gateway id or a topic was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TopicError {
    /// The gateway id is empty or longer than [`MAX_GATEWAY_ID_LEN`].
    #[error("gateway id of {len} bytes (must be 1..={MAX_GATEWAY_ID_LEN})")]
    IdLength {
        /// Its length.
        len: usize,
    },
    /// The gateway id holds a character outside `[a-z0-9-]`.
    #[error("gateway id has {found:?} at byte {at}; only [a-z0-9-] is allowed")]
    IdCharacter {
        /// Byte offset.
        at: usize,
        /// The offending character.
        found: char,
    },
    /// The gateway id starts or ends with `-`.
    #[error("gateway id starts or ends with '-'")]
    IdDash,
    /// The topic is longer than [`MAX_TOPIC_LEN`].
    #[error("topic of {len} bytes exceeds {MAX_TOPIC_LEN}")]
    TopicLength {
        /// Its length.
        len: usize,
    },
    /// The topic is not one of the fleet link's topics.
    #[error("unknown topic {topic:?}")]
    Unknown {
        /// The topic (already bounded in length).
        topic: String,
    },
}

/// A validated gateway id: `[a-z0-9-]{1,64}`, no leading or trailing `-`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct GatewayId(String);

impl GatewayId {
    /// Validates `id`.
    pub fn new(id: &str) -> Result<Self, TopicError> {
        if id.is_empty() || id.len() > MAX_GATEWAY_ID_LEN {
            return Err(TopicError::IdLength { len: id.len() });
        }
        if let Some((at, found)) = id
            .char_indices()
            .find(|(_, c)| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(TopicError::IdCharacter { at, found });
        }
        if id.starts_with('-') || id.ends_with('-') {
            return Err(TopicError::IdDash);
        }
        Ok(Self(id.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for GatewayId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for GatewayId {
    type Err = TopicError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

impl TryFrom<String> for GatewayId {
    type Error = TopicError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Self::new(&s)
    }
}

impl From<GatewayId> for String {
    fn from(id: GatewayId) -> Self {
        id.0
    }
}

/// A per-gateway topic, `spoke/{gw}/…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SpokeTopic {
    /// `down/job`: signed jobs, hub → gateway.
    Job,
    /// `down/cmd`: hub commands.
    Cmd,
    /// `down/ack`: signed receipts.
    Ack,
    /// `up/evt`: sealed ledger records.
    Evt,
    /// `up/birth`: retained birth message.
    Birth,
    /// `up/death`: Last Will.
    Death,
    /// `up/attest`: quotes answering a nonce.
    Attest,
}

impl SpokeTopic {
    /// Every per-gateway topic.
    pub const ALL: [SpokeTopic; 7] = [
        Self::Job,
        Self::Cmd,
        Self::Ack,
        Self::Evt,
        Self::Birth,
        Self::Death,
        Self::Attest,
    ];

    /// The suffix after `spoke/{gw}/`.
    pub fn suffix(self) -> &'static str {
        match self {
            Self::Job => "down/job",
            Self::Cmd => "down/cmd",
            Self::Ack => "down/ack",
            Self::Evt => "up/evt",
            Self::Birth => "up/birth",
            Self::Death => "up/death",
            Self::Attest => "up/attest",
        }
    }

    /// True for hub → gateway topics.
    pub fn is_down(self) -> bool {
        matches!(self, Self::Job | Self::Cmd | Self::Ack)
    }
}

/// A fleet-wide retained topic, `fleet/down/…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FleetTopic {
    /// Trust-root metadata.
    Root,
    /// Policy bundles.
    Policies,
    /// Model bundles.
    Models,
    /// The revocation list.
    Revocation,
}

impl FleetTopic {
    /// Every fleet-wide topic.
    pub const ALL: [FleetTopic; 4] = [Self::Root, Self::Policies, Self::Models, Self::Revocation];

    /// The topic of one policy or model id, `fleet/down/{policies,models}/{id}`, so that each
    /// id keeps its own retained message (one retained message per topic). `None` for the root
    /// and revocation topics, or an id that is not `[A-Za-z0-9._-]{1,64}`.
    pub fn item(self, id: &str) -> Option<String> {
        (matches!(self, Self::Policies | Self::Models) && valid_item_id(id))
            .then(|| format!("fleet/down/{}/{id}", self.last()))
    }

    fn last(self) -> &'static str {
        match self {
            Self::Root => "root",
            Self::Policies => "policies",
            Self::Models => "models",
            Self::Revocation => "revocation",
        }
    }
}

fn valid_item_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_GATEWAY_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

/// Any topic of the fleet link.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    /// `spoke/{gw}/…`.
    Spoke(GatewayId, SpokeTopic),
    /// `fleet/down/…`.
    Fleet(FleetTopic),
}

impl Topic {
    /// The topic string.
    pub fn name(&self) -> String {
        match self {
            Self::Spoke(gw, t) => format!("spoke/{gw}/{}", t.suffix()),
            Self::Fleet(t) => format!("fleet/down/{}", t.last()),
        }
    }

    /// Parses a topic string; anything not of the fleet link is refused.
    pub fn parse(topic: &str) -> Result<Self, TopicError> {
        if topic.len() > MAX_TOPIC_LEN {
            return Err(TopicError::TopicLength { len: topic.len() });
        }
        let unknown = || TopicError::Unknown {
            topic: topic.to_owned(),
        };
        if let Some(rest) = topic.strip_prefix("fleet/down/") {
            // `policies/{id}` and `models/{id}` carry one item each (see `FleetTopic::item`).
            let (kind, item) = match rest.split_once('/') {
                Some((kind, id)) if valid_item_id(id) => (kind, true),
                Some(_) => return Err(unknown()),
                None => (rest, false),
            };
            return FleetTopic::ALL
                .into_iter()
                .find(|t| {
                    t.last() == kind
                        && (!item || matches!(t, FleetTopic::Policies | FleetTopic::Models))
                })
                .map(Self::Fleet)
                .ok_or_else(unknown);
        }
        let rest = topic.strip_prefix("spoke/").ok_or_else(unknown)?;
        let (gw, suffix) = rest.split_once('/').ok_or_else(unknown)?;
        let gw = GatewayId::new(gw)?;
        SpokeTopic::ALL
            .into_iter()
            .find(|t| t.suffix() == suffix)
            .map(|t| Self::Spoke(gw, t))
            .ok_or_else(unknown)
    }

    /// The subscription filters a gateway uses: its own `down/#` and the fleet-wide topics.
    pub fn gateway_subscriptions(gw: &GatewayId) -> [String; 2] {
        [format!("spoke/{gw}/down/#"), "fleet/down/#".to_owned()]
    }

    /// The subscription filters of the hub: every gateway's upward topics.
    pub fn hub_subscriptions() -> [&'static str; 1] {
        ["spoke/+/up/#"]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_topic_round_trips_through_its_name() {
        let gw = GatewayId::new("spoke-01").unwrap();
        for t in SpokeTopic::ALL {
            let topic = Topic::Spoke(gw.clone(), t);
            assert_eq!(Topic::parse(&topic.name()).unwrap(), topic);
        }
        for t in FleetTopic::ALL {
            assert_eq!(
                Topic::parse(&Topic::Fleet(t).name()).unwrap(),
                Topic::Fleet(t)
            );
        }
        assert_eq!(
            Topic::Spoke(gw, SpokeTopic::Evt).name(),
            "spoke/spoke-01/up/evt"
        );
        let item = FleetTopic::Policies.item("fdm-hctz-printlet").unwrap();
        assert_eq!(item, "fleet/down/policies/fdm-hctz-printlet");
        assert_eq!(
            Topic::parse(&item).unwrap(),
            Topic::Fleet(FleetTopic::Policies)
        );
        assert_eq!(FleetTopic::Root.item("x"), None);
        assert_eq!(FleetTopic::Models.item("a/b"), None);
    }

    #[test]
    fn refuses_gateway_ids_that_could_widen_an_acl() {
        for (id, err) in [
            ("", TopicError::IdLength { len: 0 }),
            ("a+b", TopicError::IdCharacter { at: 1, found: '+' }),
            ("#", TopicError::IdCharacter { at: 0, found: '#' }),
            ("a/b", TopicError::IdCharacter { at: 1, found: '/' }),
            ("Spoke", TopicError::IdCharacter { at: 0, found: 'S' }),
            ("-a", TopicError::IdDash),
            ("a-", TopicError::IdDash),
        ] {
            assert_eq!(GatewayId::new(id), Err(err), "{id:?}");
        }
        assert_eq!(
            GatewayId::new(&"a".repeat(65)),
            Err(TopicError::IdLength { len: 65 })
        );
        assert!(GatewayId::new(&"a".repeat(64)).is_ok());
    }

    #[test]
    fn refuses_unknown_and_malformed_topics() {
        for t in [
            "spoke/gw/up/other",
            "spoke/gw",
            "spoke/gw/up/evt/extra",
            "fleet/down/jobs",
            "other/gw/up/evt",
            "spoke//up/evt",
            "fleet/down/root/x",
            "fleet/down/revocation/x",
            "fleet/down/policies/a/b",
            "fleet/down/policies/+",
            "fleet/down/policies/",
        ] {
            assert!(Topic::parse(t).is_err(), "{t}");
        }
        assert_eq!(
            Topic::parse(&"x".repeat(200)),
            Err(TopicError::TopicLength { len: 200 })
        );
    }
}

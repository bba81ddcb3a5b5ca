//! Signed fleet metadata, retained on `fleet/down/{root,policies,models,revocation}`: what each
//! message carries, how it is verified, and the anti-rollback rules.
//!
//! | topic | payload | signed by | anti-rollback |
//! |---|---|---|---|
//! | `fleet/down/root` | [`RootChain`]: the last few trust-root envelopes, oldest first | old **and** new `root` thresholds (`trust.rs`) | version exactly +1 per step |
//! | `fleet/down/policies[/{id}]` | COSE_Sign1 [`PolicyBundle`] | `policies` | per policy id, version only goes up |
//! | `fleet/down/models[/{id}]` | COSE_Sign1 [`ModelBundle`] | `models` | per model id, version only goes up |
//! | `fleet/down/revocation` | COSE_Sign1 [`RevocationList`] | `revocation` | version only goes up; expiry |
//!
//! Each `verify_*` function checks one message against the trust root in force (with revoked keys
//! removed from every role, see [`RoleKeysInForce`]) and returns a proof type with private fields.
//! The *state* (which versions are in force, replay vs rollback) is the daemon's store; the rules
//! it applies are the [`Freshness`] function here, so they are tested without I/O.
//!
//! Why a chain for roots: a retained topic holds one message, and a gateway that was offline
//! through two rotations must still walk v3 → v4 → v5, each signed by its predecessor's keys.
//! The hub publishes the last [`MAX_ROOT_CHAIN`] roots; the gateway skips the ones it has.
//!
//! Revocation (a [`RevocationList`]) names:
//! - hub **key ids** of any role: a revoked key's signature no longer counts towards any role's
//!   threshold (jobs, receipts, policies, models, revocation itself; for `root`, only a new root
//!   removes a key);
//! - **gateway ids**: a gateway that finds itself revoked refuses new jobs (it keeps delivering
//!   its ledger, so the hub still gets the evidence);
//! - **job ids**: a job revoked before it prints is refused.
//!
//! Client certificate serials are not in it: the broker enforces certificates, and removing a
//! gateway from the broker's ACL cuts it off there. A list has an expiry: once it has passed,
//! the gateway refuses new jobs until the hub publishes a fresh list (a frozen feed cannot hide a
//! revocation for longer than the list's lifetime). This module does no I/O.

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use super::{FLEET_FORMAT_VERSION, GatewayId};
use crate::cbor::{self, CborError};
use crate::envelope::{self, ContentType, EnvelopeError, KeyId, PublicKey, RoleKeys};
use crate::inference::model::{ModelError, ValidatedModel};
use crate::policy::{Policy, PolicyError};
use crate::trust::{MAX_TRUST_ROOT_BYTES, Role, TrustError, TrustedRoot};

/// Most roots in one [`RootChain`].
pub const MAX_ROOT_CHAIN: usize = 8;
/// Largest root chain message, bytes.
pub const MAX_ROOT_CHAIN_BYTES: usize = MAX_ROOT_CHAIN * MAX_TRUST_ROOT_BYTES + 64;
/// Largest policy bundle message, bytes.
pub const MAX_POLICY_BUNDLE_BYTES: usize = 256 * 1024;
/// Largest model bundle message, bytes (within the fleet link's packet size).
pub const MAX_MODEL_BUNDLE_BYTES: usize = super::MAX_JOB_MESSAGE_BYTES;
/// Largest revocation list message, bytes.
pub const MAX_REVOCATION_BYTES: usize = 256 * 1024;
/// Most entries of each kind in a revocation list.
pub const MAX_REVOKED: usize = 4096;
/// Longest policy or model id, bytes.
pub const MAX_BUNDLE_ID_LEN: usize = 64;

/// The root topic's payload: trust-root envelopes, oldest first, consecutive versions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RootChain {
    /// Format version.
    pub v: u8,
    /// The envelopes (each exactly what `TrustedRoot::rotate` takes).
    pub roots: Vec<serde_bytes::ByteBuf>,
}

/// A policy bundle: one design-space TOML file with the id and version the hub vouches for.
/// Fields in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PolicyBundle {
    /// Format version.
    pub v: u8,
    /// The policy id (must equal the TOML's `id`).
    pub id: String,
    /// The TOML file's bytes.
    #[serde(with = "serde_bytes")]
    pub toml: Vec<u8>,
    /// SHA-256 of `toml`.
    #[serde(with = "serde_bytes")]
    pub sha256: [u8; 32],
    /// The policy version (must equal the TOML's `version`).
    pub version: u32,
}

/// A model bundle: one validated PAT model file with the id and version the hub vouches for.
/// Fields in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelBundle {
    /// Format version.
    pub v: u8,
    /// The model id (must equal the model file's id).
    pub id: String,
    /// The model file's bytes (CBOR).
    #[serde(with = "serde_bytes")]
    pub model: Vec<u8>,
    /// SHA-256 of `model`.
    #[serde(with = "serde_bytes")]
    pub sha256: [u8; 32],
    /// The model version (must equal the model file's version).
    pub version: u32,
}

/// A revocation list. Fields in deterministic CBOR key order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevocationList {
    /// Format version.
    pub v: u8,
    /// Revoked job ids.
    pub jobs: BTreeSet<String>,
    /// Revoked hub key ids (any role).
    pub keys: BTreeSet<KeyId>,
    /// Expiry, Unix seconds.
    pub expires: u64,
    /// List version; only goes up.
    pub version: u64,
    /// Revoked gateway ids.
    pub gateways: BTreeSet<GatewayId>,
}

/// Why a metadata message was refused. [`code`](Self::code) gives a stable code.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum MetadataError {
    /// The envelope is malformed, of another content type, or its signatures do not meet the
    /// role's threshold (with revoked keys removed).
    #[error("metadata envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The payload is not a valid encoding (includes the size caps).
    #[error("metadata payload: {0}")]
    Cbor(#[from] CborError),
    /// Unsupported format version.
    #[error("metadata format version {found} (expected {FLEET_FORMAT_VERSION})")]
    Version {
        /// The version found.
        found: u8,
    },
    /// A trust root in the chain was refused.
    #[error("trust root: {0}")]
    Root(#[from] TrustError),
    /// The chain is empty, too long, or does not reach past the root in force.
    #[error("root chain of {len} roots (1..={MAX_ROOT_CHAIN} allowed)")]
    ChainLength {
        /// Roots in the chain.
        len: usize,
    },
    /// A bundle id is empty, too long, or not `[A-Za-z0-9._-]`.
    #[error("bundle id {id:?} is not valid")]
    BadId {
        /// The id.
        id: String,
    },
    /// The bundle's SHA-256 does not match its bytes.
    #[error("bundle {id}: SHA-256 does not match its bytes")]
    HashMismatch {
        /// The id.
        id: String,
    },
    /// The policy bundle's TOML is not UTF-8.
    #[error("policy bundle {id}: the TOML is not UTF-8")]
    NotUtf8 {
        /// The id.
        id: String,
    },
    /// The bundle's id or version differ from those inside the file it carries.
    #[error("bundle says {id} v{version}, its file says {file_id} v{file_version}")]
    Inconsistent {
        /// The bundle's id.
        id: String,
        /// The bundle's version.
        version: u32,
        /// The file's id.
        file_id: String,
        /// The file's version.
        file_version: u32,
    },
    /// The policy TOML does not parse or fails its own checks.
    #[error("policy bundle: {0}")]
    Policy(#[from] PolicyError),
    /// The model file does not decode or fails validation.
    #[error("model bundle: {0}")]
    Model(#[from] ModelError),
    /// The revocation list has too many entries.
    #[error("revocation list with {count} entries of one kind (max {MAX_REVOKED})")]
    TooManyRevoked {
        /// The count.
        count: usize,
    },
    /// The revocation list has expired.
    #[error("revocation list v{version} expired at {expires} (now {now})")]
    Expired {
        /// Its version.
        version: u64,
        /// Its expiry.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
}

impl MetadataError {
    /// A stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Envelope(EnvelopeError::BelowThreshold { .. }) => "metadata-below-threshold",
            Self::Envelope(EnvelopeError::UnknownKey { .. }) => "metadata-unknown-signer",
            Self::Envelope(EnvelopeError::WrongContentType { .. }) => "metadata-wrong-content-type",
            Self::Envelope(_) => "metadata-bad-envelope",
            Self::Cbor(_) => "metadata-malformed",
            Self::Version { .. } => "metadata-version",
            Self::Root(_) => "metadata-bad-root",
            Self::ChainLength { .. } => "metadata-root-chain-length",
            Self::BadId { .. } => "metadata-bad-id",
            Self::HashMismatch { .. } => "metadata-hash-mismatch",
            Self::NotUtf8 { .. } => "metadata-not-utf8",
            Self::Inconsistent { .. } => "metadata-inconsistent",
            Self::Policy(_) => "metadata-bad-policy",
            Self::Model(_) => "metadata-bad-model",
            Self::TooManyRevoked { .. } => "metadata-too-many-revoked",
            Self::Expired { .. } => "metadata-expired",
        }
    }
}

/// The trust root in force with the revoked key ids removed from every role: what every
/// signature on fleet metadata (and jobs, receipts) is checked against.
#[derive(Debug, Clone, Copy)]
pub struct RoleKeysInForce<'a> {
    /// The trust root in force.
    pub root: &'a TrustedRoot,
    /// Key ids revoked by the revocation list in force.
    pub revoked: &'a BTreeSet<KeyId>,
}

/// The empty revocation list.
static NO_REVOCATIONS: BTreeSet<KeyId> = BTreeSet::new();

impl<'a> RoleKeysInForce<'a> {
    /// The trust root's keys as they are, for a holder without a revocation list.
    pub fn without_revocations(root: &'a TrustedRoot) -> Self {
        Self {
            root,
            revoked: &NO_REVOCATIONS,
        }
    }

    /// The role's keys, revoked ones removed (the threshold stays the root's).
    pub fn keys(&self, role: Role) -> Vec<PublicKey> {
        self.root
            .role_keys(role)
            .into_iter()
            .filter(|k| !self.revoked.contains(&k.key_id()))
            .collect()
    }

    fn verify(
        &self,
        bytes: &[u8],
        kind: ContentType,
        role: Role,
        max: usize,
    ) -> Result<Vec<u8>, MetadataError> {
        let env = envelope::decode(bytes, kind, max)?;
        let keys = self.keys(role);
        let role_keys: RoleKeys<'_> = self.root.role(&keys, role);
        Ok(env.verify(&role_keys)?.into_payload())
    }
}

/// The roots of a chain that come after the root in force, each checked against its predecessor.
/// Roots at or below the current version are skipped (already in force); an empty result means
/// the chain holds nothing new. Expiry of intermediate roots is checked at `now` like the last.
pub fn verify_root_chain(
    bytes: &[u8],
    current: &TrustedRoot,
    now: u64,
) -> Result<Vec<TrustedRoot>, MetadataError> {
    let chain: RootChain = cbor::from_slice(bytes, MAX_ROOT_CHAIN_BYTES)?;
    if chain.v != FLEET_FORMAT_VERSION {
        return Err(MetadataError::Version { found: chain.v });
    }
    if chain.roots.is_empty() || chain.roots.len() > MAX_ROOT_CHAIN {
        return Err(MetadataError::ChainLength {
            len: chain.roots.len(),
        });
    }
    let mut accepted: Vec<TrustedRoot> = Vec::new();
    for envelope_bytes in &chain.roots {
        let tip = accepted.last().unwrap_or(current);
        // Skip what is already in force: decode only to read the version.
        let env = envelope::decode(envelope_bytes, ContentType::TrustRoot, MAX_TRUST_ROOT_BYTES)?;
        let meta: crate::trust::TrustRoot =
            cbor::from_slice(env.unverified_payload(), MAX_TRUST_ROOT_BYTES)?;
        if meta.version <= tip.metadata().version {
            continue;
        }
        accepted.push(tip.rotate(envelope_bytes, now)?);
    }
    Ok(accepted)
}

/// A root chain for the topic, from envelopes oldest first (hub side).
pub fn encode_root_chain(roots: &[Vec<u8>]) -> Result<Vec<u8>, MetadataError> {
    if roots.is_empty() || roots.len() > MAX_ROOT_CHAIN {
        return Err(MetadataError::ChainLength { len: roots.len() });
    }
    Ok(cbor::to_vec(&RootChain {
        v: FLEET_FORMAT_VERSION,
        roots: roots
            .iter()
            .map(|r| serde_bytes::ByteBuf::from(r.clone()))
            .collect(),
    })?)
}

fn check_id(id: &str) -> Result<(), MetadataError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_BUNDLE_ID_LEN
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(MetadataError::BadId { id: id.to_owned() })
    }
}

/// A policy bundle signed by the `policies` role whose TOML parses and matches. Private fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedPolicyBundle {
    id: String,
    version: u32,
    toml: String,
    sha256: [u8; 32],
}

impl VerifiedPolicyBundle {
    /// The policy id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The TOML bytes (what `Policy::from_toml` takes, and what gets measured).
    pub fn toml(&self) -> &str {
        &self.toml
    }
    /// SHA-256 of the TOML bytes.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
    /// The parsed policy.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        Policy::from_toml(&self.toml)
    }
}

/// Verifies a policy bundle: `policies` threshold (revoked keys removed), id, hash, the TOML
/// parses as a policy whose id and version equal the bundle's.
pub fn verify_policy_bundle(
    bytes: &[u8],
    keys: &RoleKeysInForce<'_>,
) -> Result<VerifiedPolicyBundle, MetadataError> {
    let payload = keys.verify(
        bytes,
        ContentType::Policy,
        Role::Policies,
        MAX_POLICY_BUNDLE_BYTES,
    )?;
    let bundle: PolicyBundle = cbor::from_slice(&payload, MAX_POLICY_BUNDLE_BYTES)?;
    if bundle.v != FLEET_FORMAT_VERSION {
        return Err(MetadataError::Version { found: bundle.v });
    }
    check_id(&bundle.id)?;
    if <[u8; 32]>::from(Sha256::digest(&bundle.toml)) != bundle.sha256 {
        return Err(MetadataError::HashMismatch { id: bundle.id });
    }
    let text = String::from_utf8(bundle.toml).map_err(|_| MetadataError::NotUtf8 {
        id: bundle.id.clone(),
    })?;
    let policy = Policy::from_toml(&text)?;
    if policy.id() != bundle.id || policy.version() != bundle.version {
        return Err(MetadataError::Inconsistent {
            id: bundle.id,
            version: bundle.version,
            file_id: policy.id().to_owned(),
            file_version: policy.version(),
        });
    }
    Ok(VerifiedPolicyBundle {
        id: bundle.id,
        version: bundle.version,
        toml: text,
        sha256: bundle.sha256,
    })
}

/// A model bundle signed by the `models` role whose model validates and matches. Private fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedModelBundle {
    id: String,
    version: u32,
    model: Vec<u8>,
    sha256: [u8; 32],
}

impl VerifiedModelBundle {
    /// The model id.
    pub fn id(&self) -> &str {
        &self.id
    }
    /// Its version.
    pub fn version(&self) -> u32 {
        self.version
    }
    /// The model file's bytes (what `ValidatedModel::from_bytes` takes).
    pub fn bytes(&self) -> &[u8] {
        &self.model
    }
    /// SHA-256 of the model file.
    pub fn sha256(&self) -> &[u8; 32] {
        &self.sha256
    }
}

/// Verifies a model bundle: `models` threshold (revoked keys removed), id, hash, and the model
/// file validates (including its reference predictions) with the bundle's id and version.
pub fn verify_model_bundle(
    bytes: &[u8],
    keys: &RoleKeysInForce<'_>,
) -> Result<VerifiedModelBundle, MetadataError> {
    let payload = keys.verify(
        bytes,
        ContentType::Model,
        Role::Models,
        MAX_MODEL_BUNDLE_BYTES,
    )?;
    let bundle: ModelBundle = cbor::from_slice(&payload, MAX_MODEL_BUNDLE_BYTES)?;
    if bundle.v != FLEET_FORMAT_VERSION {
        return Err(MetadataError::Version { found: bundle.v });
    }
    check_id(&bundle.id)?;
    if <[u8; 32]>::from(Sha256::digest(&bundle.model)) != bundle.sha256 {
        return Err(MetadataError::HashMismatch { id: bundle.id });
    }
    let model = ValidatedModel::from_bytes(&bundle.model)?;
    let file_id = model.id();
    if file_id.id != bundle.id || file_id.version != bundle.version {
        return Err(MetadataError::Inconsistent {
            id: bundle.id,
            version: bundle.version,
            file_id: file_id.id.clone(),
            file_version: file_id.version,
        });
    }
    Ok(VerifiedModelBundle {
        id: bundle.id,
        version: bundle.version,
        model: bundle.model,
        sha256: bundle.sha256,
    })
}

/// A revocation list signed by the `revocation` role, not expired when verified. Private fields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRevocation {
    list: RevocationList,
}

impl VerifiedRevocation {
    /// The list.
    pub fn list(&self) -> &RevocationList {
        &self.list
    }
    /// Its version.
    pub fn version(&self) -> u64 {
        self.list.version
    }
    /// Whether it is still in force at `now` (Unix seconds).
    pub fn check_current(&self, now: u64) -> Result<(), MetadataError> {
        if self.list.expires <= now {
            return Err(MetadataError::Expired {
                version: self.list.version,
                expires: self.list.expires,
                now,
            });
        }
        Ok(())
    }
}

/// Verifies a revocation list: `revocation` threshold (keys revoked by the list in force
/// removed), bounds, not expired at `now`.
pub fn verify_revocation(
    bytes: &[u8],
    keys: &RoleKeysInForce<'_>,
    now: u64,
) -> Result<VerifiedRevocation, MetadataError> {
    let payload = keys.verify(
        bytes,
        ContentType::Revocation,
        Role::Revocation,
        MAX_REVOCATION_BYTES,
    )?;
    let list: RevocationList = cbor::from_slice(&payload, MAX_REVOCATION_BYTES)?;
    if list.v != FLEET_FORMAT_VERSION {
        return Err(MetadataError::Version { found: list.v });
    }
    let count = list
        .jobs
        .len()
        .max(list.keys.len())
        .max(list.gateways.len());
    if count > MAX_REVOKED {
        return Err(MetadataError::TooManyRevoked { count });
    }
    let verified = VerifiedRevocation { list };
    verified.check_current(now)?;
    Ok(verified)
}

/// How a verified message's version relates to the one in force.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Freshness {
    /// Newer: apply it.
    Newer,
    /// The same version with the same bytes: a retained message seen again; ignore it.
    Replay,
    /// The same version with other bytes: the signer equivocated; refuse.
    Equivocation,
    /// Older: a rollback; refuse.
    Rollback,
}

/// The anti-rollback rule for one metadata item: `current` is the (version, SHA-256 of the
/// content) in force, if any.
pub fn freshness(current: Option<(u64, [u8; 32])>, new: (u64, [u8; 32])) -> Freshness {
    match current {
        None => Freshness::Newer,
        Some((v, _)) if new.0 > v => Freshness::Newer,
        Some((v, h)) if new.0 == v && new.1 == h => Freshness::Replay,
        Some((v, _)) if new.0 == v => Freshness::Equivocation,
        Some(_) => Freshness::Rollback,
    }
}

#[cfg(test)]
mod tests;

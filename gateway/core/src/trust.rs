//! The hub's trust root: which keys may sign what, and how the root itself is rotated.
//!
//! Modelled on TUF's root metadata. The root lists public keys and, for each role (`root`, `jobs`,
//! `policies`, `models`, `revocation`), the key ids that hold it and how many of them must sign
//! (k of n). It has a version that only goes up and an expiry. A gateway pins one root at
//! provisioning; from then on a new root is accepted only when it is signed by a threshold of the
//! **old** root's `root` keys and a threshold of its own (so a rotation can neither be forged nor
//! lock the hub out), and its version is exactly one more than the old one.
//!
//! [`TrustedRoot`] is the proof that a root was checked; job, policy and model verification take
//! it, never a raw [`TrustRoot`]. This module does no I/O: bytes and the time come in as arguments.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::cbor::{self, CborError};
use crate::envelope::{self, ContentType, EnvelopeError, KeyId, PublicKey, RoleKeys};

/// Largest trust-root envelope accepted, bytes.
pub const MAX_TRUST_ROOT_BYTES: usize = 64 * 1024;
/// Most keys in one root.
pub const MAX_KEYS: usize = 64;

/// A role of the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Role {
    /// Signs new roots.
    Root,
    /// Signs print jobs.
    Jobs,
    /// Signs policy (design space) bundles.
    Policies,
    /// Signs PAT model bundles.
    Models,
    /// Signs revocation lists.
    Revocation,
}

impl Role {
    /// Every role, in a fixed order.
    pub const ALL: [Role; 5] = [
        Role::Root,
        Role::Jobs,
        Role::Policies,
        Role::Models,
        Role::Revocation,
    ];

    /// The role's name as written in files and reports.
    pub fn name(self) -> &'static str {
        match self {
            Role::Root => "root",
            Role::Jobs => "jobs",
            Role::Policies => "policies",
            Role::Models => "models",
            Role::Revocation => "revocation",
        }
    }
}

/// The keys of a role and its threshold, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    /// Key ids holding the role, strictly increasing.
    pub keyids: Vec<KeyId>,
    /// How many distinct keys must sign.
    pub threshold: u32,
}

/// The five roles. Fields are declared in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(missing_docs)]
pub struct Roles {
    pub jobs: RoleSpec,
    pub root: RoleSpec,
    pub models: RoleSpec,
    pub policies: RoleSpec,
    pub revocation: RoleSpec,
}

impl Roles {
    /// The spec of one role.
    pub fn get(&self, role: Role) -> &RoleSpec {
        match role {
            Role::Root => &self.root,
            Role::Jobs => &self.jobs,
            Role::Policies => &self.policies,
            Role::Models => &self.models,
            Role::Revocation => &self.revocation,
        }
    }
}

/// The trust-root metadata (the signed payload). Fields in deterministic CBOR key order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrustRoot {
    /// Public keys by id; each value is the SEC1 uncompressed P-256 point.
    pub keys: BTreeMap<KeyId, serde_bytes::ByteBuf>,
    /// Role assignments.
    pub roles: Roles,
    /// Hub identity, e.g. `hub.example-trust.nhs.uk`.
    pub hub_id: String,
    /// Expiry, Unix seconds.
    pub expires: u64,
    /// Version; a replacement must have exactly `version + 1`.
    pub version: u64,
}

/// Why a trust root was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TrustError {
    /// The envelope did not verify.
    #[error("trust root envelope: {0}")]
    Envelope(#[from] EnvelopeError),
    /// The payload is not a valid root.
    #[error("trust root payload: {0}")]
    Payload(#[from] CborError),
    /// A key is not a valid P-256 point, or its id is not its hash.
    #[error("key {key_id} is invalid or its id is not the hash of its encoding")]
    BadKey {
        /// The listed id.
        key_id: KeyId,
    },
    /// A role names a key that is not in `keys`.
    #[error("role {role} names key {key_id}, which the root does not list")]
    MissingKey {
        /// The role.
        role: &'static str,
        /// The missing key.
        key_id: KeyId,
    },
    /// A role's key ids are not strictly increasing (duplicates or unsorted).
    #[error("role {role} lists its key ids unsorted or twice")]
    UnsortedKeyIds {
        /// The role.
        role: &'static str,
    },
    /// A role's threshold is 0 or larger than its key count.
    #[error("role {role} has threshold {threshold} with {keys} key(s)")]
    BadThreshold {
        /// The role.
        role: &'static str,
        /// The threshold.
        threshold: u32,
        /// Its key count.
        keys: usize,
    },
    /// More than [`MAX_KEYS`] keys.
    #[error("{count} keys exceed the cap of {MAX_KEYS}")]
    TooManyKeys {
        /// How many.
        count: usize,
    },
    /// The root has expired.
    #[error("trust root version {version} expired at {expires} (now {now})")]
    Expired {
        /// Its version.
        version: u64,
        /// Its expiry.
        expires: u64,
        /// The time of the check.
        now: u64,
    },
    /// A replacement does not carry the next version.
    #[error("trust root version {new} does not follow version {current}")]
    VersionNotNext {
        /// The pinned version.
        current: u64,
        /// The offered version.
        new: u64,
    },
    /// The hub id changed in a rotation.
    #[error("trust root for hub {new:?} cannot replace hub {current:?}")]
    HubChanged {
        /// The pinned hub.
        current: String,
        /// The offered hub.
        new: String,
    },
}

/// A trust root whose signatures, structure and expiry were checked. Private fields: the only
/// ways to get one are [`TrustedRoot::pin`] and [`TrustedRoot::rotate`].
#[derive(Debug, Clone)]
pub struct TrustedRoot {
    root: TrustRoot,
    keys: BTreeMap<KeyId, PublicKey>,
    bytes: Vec<u8>,
}

impl TrustRoot {
    /// Encodes the payload as deterministic CBOR.
    pub fn to_cbor(&self) -> Result<Vec<u8>, CborError> {
        cbor::to_vec(self)
    }

    fn checked_keys(&self) -> Result<BTreeMap<KeyId, PublicKey>, TrustError> {
        if self.keys.len() > MAX_KEYS {
            return Err(TrustError::TooManyKeys {
                count: self.keys.len(),
            });
        }
        let mut keys = BTreeMap::new();
        for (id, sec1) in &self.keys {
            let key = PublicKey::from_sec1(sec1).map_err(|_| TrustError::BadKey { key_id: *id })?;
            if key.key_id() != *id || key.to_sec1() != sec1.as_slice() {
                return Err(TrustError::BadKey { key_id: *id });
            }
            keys.insert(*id, key);
        }
        for role in Role::ALL {
            let spec = self.roles.get(role);
            if !spec.keyids.windows(2).all(|w| matches!(w, [a, b] if a < b)) {
                return Err(TrustError::UnsortedKeyIds { role: role.name() });
            }
            if let Some(missing) = spec.keyids.iter().find(|k| !keys.contains_key(k)) {
                return Err(TrustError::MissingKey {
                    role: role.name(),
                    key_id: *missing,
                });
            }
            let threshold = usize::try_from(spec.threshold).unwrap_or(usize::MAX);
            if threshold == 0 || threshold > spec.keyids.len() {
                return Err(TrustError::BadThreshold {
                    role: role.name(),
                    threshold: spec.threshold,
                    keys: spec.keyids.len(),
                });
            }
        }
        Ok(keys)
    }
}

fn role_keys(root: &TrustRoot, keys: &BTreeMap<KeyId, PublicKey>, role: Role) -> Vec<PublicKey> {
    root.roles
        .get(role)
        .keyids
        .iter()
        .filter_map(|id| keys.get(id).cloned())
        .collect()
}

fn decode_root(bytes: &[u8]) -> Result<(envelope::Envelope, TrustRoot), TrustError> {
    let env = envelope::decode(bytes, ContentType::TrustRoot, MAX_TRUST_ROOT_BYTES)?;
    let root: TrustRoot = cbor::from_slice(env.unverified_payload(), MAX_TRUST_ROOT_BYTES)?;
    Ok((env, root))
}

impl TrustedRoot {
    /// Pins a root at provisioning: it must be well formed, signed by a threshold of its own
    /// `root` keys, and not expired at `now` (Unix seconds).
    pub fn pin(bytes: &[u8], now: u64) -> Result<Self, TrustError> {
        let (env, root) = decode_root(bytes)?;
        let keys = root.checked_keys()?;
        let root_keys = role_keys(&root, &keys, Role::Root);
        env.verify(&RoleKeys {
            keys: &root_keys,
            threshold: usize::try_from(root.roles.root.threshold).unwrap_or(usize::MAX),
        })?;
        if root.expires <= now {
            return Err(TrustError::Expired {
                version: root.version,
                expires: root.expires,
                now,
            });
        }
        Ok(Self {
            root,
            keys,
            bytes: bytes.to_vec(),
        })
    }

    /// Accepts a replacement root: signed by a threshold of this root's `root` keys **and** of the
    /// new root's own, version exactly one more, same hub, not expired at `now`.
    pub fn rotate(&self, bytes: &[u8], now: u64) -> Result<Self, TrustError> {
        let (env, new) = decode_root(bytes)?;
        let new_keys = new.checked_keys()?;
        let old_root_keys = self.role_keys(Role::Root);
        env.clone().verify(&self.role(&old_root_keys, Role::Root))?;
        let new_root_keys = role_keys(&new, &new_keys, Role::Root);
        env.verify(&RoleKeys {
            keys: &new_root_keys,
            threshold: usize::try_from(new.roles.root.threshold).unwrap_or(usize::MAX),
        })?;
        if new.hub_id != self.root.hub_id {
            return Err(TrustError::HubChanged {
                current: self.root.hub_id.clone(),
                new: new.hub_id,
            });
        }
        if Some(new.version) != self.root.version.checked_add(1) {
            return Err(TrustError::VersionNotNext {
                current: self.root.version,
                new: new.version,
            });
        }
        if new.expires <= now {
            return Err(TrustError::Expired {
                version: new.version,
                expires: new.expires,
                now,
            });
        }
        Ok(Self {
            root: new,
            keys: new_keys,
            bytes: bytes.to_vec(),
        })
    }

    /// Checks that the pinned root has not expired since it was pinned.
    pub fn check_current(&self, now: u64) -> Result<(), TrustError> {
        if self.root.expires <= now {
            return Err(TrustError::Expired {
                version: self.root.version,
                expires: self.root.expires,
                now,
            });
        }
        Ok(())
    }

    /// The public keys of a role.
    pub fn role_keys(&self, role: Role) -> Vec<PublicKey> {
        role_keys(&self.root, &self.keys, role)
    }

    /// A role's keys with its threshold, ready for [`envelope::Envelope::verify`].
    pub fn role<'a>(&self, keys: &'a [PublicKey], role: Role) -> RoleKeys<'a> {
        RoleKeys {
            keys,
            threshold: usize::try_from(self.root.roles.get(role).threshold).unwrap_or(usize::MAX),
        }
    }

    /// The checked metadata.
    pub fn metadata(&self) -> &TrustRoot {
        &self.root
    }

    /// The exact envelope bytes (what gets measured into the TPM).
    pub fn envelope_bytes(&self) -> &[u8] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests;

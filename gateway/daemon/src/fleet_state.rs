//! The gateway's store of signed fleet metadata: the trust root in force, the policy and model
//! bundles in force (one version per id), and the revocation list, kept in the state directory
//! and updated from the retained `fleet/down/…` messages the fleet link passes on
//! (`mqtt::Inbound::Metadata`).
//!
//! ```text
//! DIR/roots/<version, 20 digits>.cbor   every root accepted after the pinned one (the chain)
//! DIR/policies/<id>.cose                the policy bundle in force for <id>
//! DIR/models/<id>.cose                  the model bundle in force for <id>
//! DIR/revocation.cose                   the revocation list in force
//! ```
//!
//! [`FleetState::apply`] verifies a message with `dosegate_core::fleet::metadata` against the
//! root in force (revoked keys removed), applies the anti-rollback rule (a version only goes up;
//! the same version again is a retained replay and is ignored; the same version with other
//! content is refused), writes the accepted bytes atomically (temporary file, fsync, rename,
//! fsync directory) **before** it takes effect, and says what changed ([`Applied`], for a ledger
//! event). After a new root or revocation list, every bundle in force is verified again and the
//! ones no longer signed by a valid threshold are dropped (and named in [`Applied`]).
//!
//! [`FleetState::open`] re-verifies everything stored from the pinned root, so a file planted in
//! the state directory counts for nothing. It does not protect against the whole directory being
//! rolled back to an older copy (that needs a TPM NV index; see docs/fleet.md).

use std::collections::{BTreeMap, BTreeSet};
use std::fs::{self, File};
use std::io::Write as _;
use std::path::{Path, PathBuf};

use dosegate_core::cbor;
use dosegate_core::envelope::{KeyId, PublicKey};
use dosegate_core::fleet::metadata::{
    Freshness, MetadataError, RoleKeysInForce, VerifiedModelBundle, VerifiedPolicyBundle,
    VerifiedRevocation, freshness, verify_model_bundle, verify_policy_bundle, verify_revocation,
    verify_root_chain,
};
use dosegate_core::fleet::{FleetTopic, GatewayId};
use dosegate_core::trust::{Role, TrustedRoot};
use sha2::{Digest as _, Sha256};

/// Largest file read back from the store (a model bundle is the largest item).
const MAX_STORED_BYTES: u64 = dosegate_core::fleet::metadata::MAX_MODEL_BUNDLE_BYTES as u64;

/// Why an update was refused or the store could not be used. [`code`](Self::code) is stable.
#[derive(Debug, thiserror::Error)]
pub enum UpdateError {
    /// The message does not verify.
    #[error("{topic:?} update refused: {source}")]
    Refused {
        /// The topic it came on.
        topic: FleetTopic,
        /// Why.
        #[source]
        source: MetadataError,
    },
    /// An older version than the one in force.
    #[error("{what}: version {offered} is older than version {current} in force (rollback)")]
    Rollback {
        /// Which item.
        what: String,
        /// In force.
        current: u64,
        /// Offered.
        offered: u64,
    },
    /// The version in force, with other content.
    #[error("{what}: version {version} with other content than the one in force (equivocation)")]
    Equivocation {
        /// Which item.
        what: String,
        /// The version.
        version: u64,
    },
    /// No revocation list has been received.
    #[error("no revocation list in force")]
    NoRevocationList,
    /// The revocation list in force has expired.
    #[error("revocation list: {0}")]
    RevocationExpired(#[source] MetadataError),
    /// A stored file failed verification at open.
    #[error("stored {path}: {source}")]
    Stored {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: MetadataError,
    },
    /// Reading or writing the store failed.
    #[error("fleet state {op} {path}: {source}")]
    Io {
        /// What was done.
        op: &'static str,
        /// The path.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
}

impl UpdateError {
    /// A stable kebab-case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Refused { source, .. } => source.code(),
            Self::Rollback { .. } => "metadata-rollback",
            Self::Equivocation { .. } => "metadata-equivocation",
            Self::NoRevocationList => "revocation-missing",
            Self::RevocationExpired(_) => "revocation-expired",
            Self::Stored { .. } => "metadata-stored-invalid",
            Self::Io { .. } => "fleet-state-io",
        }
    }
}

fn io(op: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> UpdateError {
    let path = path.to_owned();
    move |source| UpdateError::Io { op, path, source }
}

/// What an update changed (for the ledger event and the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// New trust roots were accepted, up to this version.
    Root {
        /// The version now in force.
        version: u64,
        /// SHA-256 of its envelope (what gets measured).
        sha256: [u8; 32],
        /// Bundles dropped because their signers no longer hold their role.
        dropped: Vec<String>,
    },
    /// A policy bundle is in force.
    Policy {
        /// The policy id.
        id: String,
        /// Its version.
        version: u32,
        /// SHA-256 of its TOML.
        sha256: [u8; 32],
    },
    /// A model bundle is in force.
    Model {
        /// The model id.
        id: String,
        /// Its version.
        version: u32,
        /// SHA-256 of the model file.
        sha256: [u8; 32],
    },
    /// A revocation list is in force.
    Revocation {
        /// Its version.
        version: u64,
        /// Its expiry, Unix seconds.
        expires: u64,
        /// Bundles dropped because their signers were revoked.
        dropped: Vec<String>,
    },
    /// The message is the one already in force (a retained message seen again): nothing changed.
    Unchanged {
        /// The topic.
        topic: FleetTopic,
    },
}

/// Something a revocation list can name.
#[derive(Debug, Clone, Copy)]
pub enum Revocable<'a> {
    /// A hub key id.
    Key(&'a KeyId),
    /// A gateway.
    Gateway(&'a GatewayId),
    /// A job id.
    Job(&'a str),
}

/// A verified item with the exact bytes it was verified from.
#[derive(Debug, Clone)]
struct Held<T> {
    proof: T,
    bytes: Vec<u8>,
}

/// The metadata in force. See the module docs.
#[derive(Debug)]
pub struct FleetState {
    dir: PathBuf,
    root: TrustedRoot,
    policies: BTreeMap<String, Held<VerifiedPolicyBundle>>,
    models: BTreeMap<String, Held<VerifiedModelBundle>>,
    revocation: Option<Held<VerifiedRevocation>>,
}

fn write_atomic(path: &Path, bytes: &[u8]) -> Result<(), UpdateError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    fs::create_dir_all(dir).map_err(io("create", dir))?;
    let tmp = path.with_extension("tmp");
    {
        let mut f = File::create(&tmp).map_err(io("create", &tmp))?;
        f.write_all(bytes).map_err(io("write", &tmp))?;
        f.sync_all().map_err(io("fsync", &tmp))?;
    }
    fs::rename(&tmp, path).map_err(io("rename", path))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

fn remove_durably(path: &Path) -> Result<(), UpdateError> {
    match fs::remove_file(path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io("remove", path)(e)),
    }
    let dir = path.parent().unwrap_or(Path::new("."));
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync", dir))
}

fn read_bounded(path: &Path) -> Result<Vec<u8>, UpdateError> {
    let len = fs::metadata(path).map_err(io("stat", path))?.len();
    if len > MAX_STORED_BYTES {
        return Err(UpdateError::Io {
            op: "read",
            path: path.to_owned(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, "file too large"),
        });
    }
    fs::read(path).map_err(io("read", path))
}

/// Files of a directory with `ext`, sorted by name; a missing directory is empty.
fn files(dir: &Path, ext: &str) -> Result<Vec<PathBuf>, UpdateError> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let mut out: Vec<PathBuf> = fs::read_dir(dir)
        .map_err(io("list", dir))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == ext))
        .collect();
    out.sort();
    Ok(out)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// What the store does alike for policy and model bundles: each is verified against the keys in
/// force, kept per id under `<dir>/<KIND>/<id>.cose`, and replaced only by a newer version.
trait Bundle: Sized {
    /// Folder name, `policies` or `models`.
    const KIND: &'static str;
    /// Name in messages, `policy` or `model`.
    const LABEL: &'static str;
    fn verify(bytes: &[u8], keys: &RoleKeysInForce<'_>) -> Result<Self, MetadataError>;
    fn id(&self) -> &str;
    fn version(&self) -> u32;
    fn sha256(&self) -> &[u8; 32];
}

impl Bundle for VerifiedPolicyBundle {
    const KIND: &'static str = "policies";
    const LABEL: &'static str = "policy";
    fn verify(bytes: &[u8], keys: &RoleKeysInForce<'_>) -> Result<Self, MetadataError> {
        verify_policy_bundle(bytes, keys)
    }
    fn id(&self) -> &str {
        VerifiedPolicyBundle::id(self)
    }
    fn version(&self) -> u32 {
        VerifiedPolicyBundle::version(self)
    }
    fn sha256(&self) -> &[u8; 32] {
        VerifiedPolicyBundle::sha256(self)
    }
}

impl Bundle for VerifiedModelBundle {
    const KIND: &'static str = "models";
    const LABEL: &'static str = "model";
    fn verify(bytes: &[u8], keys: &RoleKeysInForce<'_>) -> Result<Self, MetadataError> {
        verify_model_bundle(bytes, keys)
    }
    fn id(&self) -> &str {
        VerifiedModelBundle::id(self)
    }
    fn version(&self) -> u32 {
        VerifiedModelBundle::version(self)
    }
    fn sha256(&self) -> &[u8; 32] {
        VerifiedModelBundle::sha256(self)
    }
}

/// The trust root and the revoked hub keys at one moment (see [`FleetState::trust_in_force`]).
#[derive(Debug, Clone)]
pub struct TrustInForce {
    root: TrustedRoot,
    revoked: BTreeSet<KeyId>,
}

impl TrustInForce {
    /// The pinned root alone, before any fleet metadata is applied.
    pub fn pinned(root: TrustedRoot) -> Self {
        Self {
            root,
            revoked: BTreeSet::new(),
        }
    }

    /// The keys to verify with.
    pub fn keys(&self) -> RoleKeysInForce<'_> {
        RoleKeysInForce {
            root: &self.root,
            revoked: &self.revoked,
        }
    }
}

/// The hub keys a revocation list revokes (none without a list).
fn revoked_keys(revocation: Option<&Held<VerifiedRevocation>>) -> &BTreeSet<KeyId> {
    static NONE: BTreeSet<KeyId> = BTreeSet::new();
    revocation.map_or(&NONE, |r| &r.proof.list().keys)
}

/// Where a bundle of `kind` with `id` is stored. Ids are `[A-Za-z0-9._-]{1,64}` (checked by the
/// verifier), so safe as file names; the extension keeps `.`-ids from looking like another
/// extension.
fn item_path(dir: &Path, kind: &str, id: &str) -> PathBuf {
    dir.join(kind).join(format!("{id}.cose"))
}

/// Loads the stored bundles of one kind, dropping (with a warning) those that no longer verify.
fn load_bundles<B: Bundle>(
    dir: &Path,
    keys: &RoleKeysInForce<'_>,
) -> Result<BTreeMap<String, Held<B>>, UpdateError> {
    let mut held = BTreeMap::new();
    for path in files(&dir.join(B::KIND), "cose")? {
        let bytes = read_bounded(&path)?;
        match B::verify(&bytes, keys) {
            Ok(proof) => {
                held.insert(proof.id().to_owned(), Held { proof, bytes });
            }
            Err(e) => {
                tracing::warn!(kind = B::LABEL, path = %path.display(), error = %e, "stored bundle dropped");
            }
        }
    }
    Ok(held)
}

/// Puts `proof` in force when it is newer than the bundle held for its id: written durably
/// first, then held. `false` when it is the one in force (a retained message seen again).
fn hold_newer<B: Bundle>(
    dir: &Path,
    held: &mut BTreeMap<String, Held<B>>,
    proof: B,
    bytes: &[u8],
) -> Result<bool, UpdateError> {
    let current = held
        .get(proof.id())
        .map(|h| (u64::from(h.proof.version()), *h.proof.sha256()));
    let what = format!("{} {}", B::LABEL, proof.id());
    if check(
        &what,
        current,
        (u64::from(proof.version()), *proof.sha256()),
    )? != Freshness::Newer
    {
        return Ok(false);
    }
    write_atomic(&item_path(dir, B::KIND, proof.id()), bytes)?;
    held.insert(
        proof.id().to_owned(),
        Held {
            proof,
            bytes: bytes.to_vec(),
        },
    );
    Ok(true)
}

/// After the keys changed: drops (from memory and disk) the bundles of one kind no longer signed
/// by a valid threshold, and names them.
fn drop_unverified<B: Bundle>(
    dir: &Path,
    held: &mut BTreeMap<String, Held<B>>,
    keys: &RoleKeysInForce<'_>,
) -> Result<Vec<String>, UpdateError> {
    let bad: Vec<String> = held
        .iter()
        .filter(|(_, h)| B::verify(&h.bytes, keys).is_err())
        .map(|(id, _)| id.clone())
        .collect();
    let mut dropped = Vec::new();
    for id in bad {
        remove_durably(&item_path(dir, B::KIND, &id))?;
        held.remove(&id);
        tracing::warn!(kind = B::LABEL, id = %id, "bundle dropped: its signers no longer hold the role");
        dropped.push(format!("{} {id}", B::LABEL));
    }
    Ok(dropped)
}

impl FleetState {
    /// Opens (creating) the store under `dir` with `pinned` (the root pinned at provisioning) and
    /// re-verifies what it holds: roots in version order from the pinned one, then the revocation
    /// list, then every bundle. Stored roots at or below the pinned version are ignored; a stored
    /// root or list that fails is an error (the directory was tampered with); a bundle no longer
    /// valid is dropped with a warning.
    pub fn open(dir: &Path, pinned: TrustedRoot) -> Result<Self, UpdateError> {
        fs::create_dir_all(dir).map_err(io("create", dir))?;
        let mut root = pinned;
        for path in files(&dir.join("roots"), "cbor")? {
            let bytes = read_bounded(&path)?;
            let chain =
                dosegate_core::fleet::metadata::encode_root_chain(&[bytes]).map_err(|source| {
                    UpdateError::Stored {
                        path: path.clone(),
                        source,
                    }
                })?;
            // Expiry of a root already accepted is the lifecycle's check (`check_current`), not
            // a reason to forget the chain: time 0 here.
            let mut next =
                verify_root_chain(&chain, &root, 0).map_err(|source| UpdateError::Stored {
                    path: path.clone(),
                    source,
                })?;
            if let Some(r) = next.pop() {
                root = r;
            }
        }
        let mut state = Self {
            dir: dir.to_owned(),
            root,
            policies: BTreeMap::new(),
            models: BTreeMap::new(),
            revocation: None,
        };
        let revocation_path = dir.join("revocation.cose");
        if revocation_path.is_file() {
            let bytes = read_bounded(&revocation_path)?;
            let none = BTreeSet::new();
            let keys = RoleKeysInForce {
                root: &state.root,
                revoked: &none,
            };
            let proof =
                verify_revocation(&bytes, &keys, 0).map_err(|source| UpdateError::Stored {
                    path: revocation_path.clone(),
                    source,
                })?;
            state.revocation = Some(Held { proof, bytes });
        }
        state.policies = load_bundles(dir, &state.keys_in_force())?;
        state.models = load_bundles(dir, &state.keys_in_force())?;
        Ok(state)
    }

    fn revoked_keys(&self) -> &BTreeSet<KeyId> {
        revoked_keys(self.revocation.as_ref())
    }

    /// The trust root in force with the revoked hub keys removed: jobs and receipts are verified
    /// against these.
    pub fn keys_in_force(&self) -> RoleKeysInForce<'_> {
        RoleKeysInForce {
            root: &self.root,
            revoked: self.revoked_keys(),
        }
    }

    /// An owned copy of [`Self::keys_in_force`], for the tasks that verify on their own (the
    /// fleet link's receipts, a running job).
    pub fn trust_in_force(&self) -> TrustInForce {
        TrustInForce {
            root: self.root.clone(),
            revoked: self.revoked_keys().clone(),
        }
    }

    /// Verifies and applies one retained message from `fleet/down/…` at `now_s` (Unix seconds).
    pub fn apply(
        &mut self,
        topic: FleetTopic,
        bytes: &[u8],
        now_s: u64,
    ) -> Result<Applied, UpdateError> {
        let refused = |source| UpdateError::Refused { topic, source };
        match topic {
            FleetTopic::Root => {
                let roots = verify_root_chain(bytes, &self.root, now_s).map_err(refused)?;
                let Some(last) = roots.last().cloned() else {
                    return Ok(Applied::Unchanged { topic });
                };
                for r in &roots {
                    let name = format!("{:020}.cbor", r.metadata().version);
                    write_atomic(&self.dir.join("roots").join(name), r.envelope_bytes())?;
                }
                self.root = last;
                let dropped = self.reverify_bundles()?;
                Ok(Applied::Root {
                    version: self.root.metadata().version,
                    sha256: sha256(self.root.envelope_bytes()),
                    dropped,
                })
            }
            FleetTopic::Policies => {
                let proof = verify_policy_bundle(bytes, &self.keys_in_force()).map_err(refused)?;
                let applied = Applied::Policy {
                    id: proof.id().to_owned(),
                    version: proof.version(),
                    sha256: *proof.sha256(),
                };
                if hold_newer(&self.dir, &mut self.policies, proof, bytes)? {
                    Ok(applied)
                } else {
                    Ok(Applied::Unchanged { topic })
                }
            }
            FleetTopic::Models => {
                let proof = verify_model_bundle(bytes, &self.keys_in_force()).map_err(refused)?;
                let applied = Applied::Model {
                    id: proof.id().to_owned(),
                    version: proof.version(),
                    sha256: *proof.sha256(),
                };
                if hold_newer(&self.dir, &mut self.models, proof, bytes)? {
                    Ok(applied)
                } else {
                    Ok(Applied::Unchanged { topic })
                }
            }
            FleetTopic::Revocation => self.apply_revocation(bytes, now_s),
        }
    }

    fn apply_revocation(&mut self, bytes: &[u8], now_s: u64) -> Result<Applied, UpdateError> {
        let topic = FleetTopic::Revocation;
        let refused = |source| UpdateError::Refused { topic, source };
        let proof = verify_revocation(bytes, &self.keys_in_force(), now_s).map_err(refused)?;
        let content = cbor::to_vec(proof.list()).map_err(|e| refused(e.into()))?;
        let current = self.revocation.as_ref().and_then(|h| {
            cbor::to_vec(h.proof.list())
                .ok()
                .map(|c| (h.proof.version(), sha256(&c)))
        });
        match check(
            "revocation list",
            current,
            (proof.version(), sha256(&content)),
        )? {
            Freshness::Newer => {}
            _ => return Ok(Applied::Unchanged { topic }),
        }
        write_atomic(&self.dir.join("revocation.cose"), bytes)?;
        let (version, expires) = (proof.version(), proof.list().expires);
        self.revocation = Some(Held {
            proof,
            bytes: bytes.to_vec(),
        });
        let dropped = self.reverify_bundles()?;
        Ok(Applied::Revocation {
            version,
            expires,
            dropped,
        })
    }

    /// After the keys changed: verifies every bundle in force again from its bytes and drops
    /// (from memory and disk) those no longer signed by a valid threshold.
    fn reverify_bundles(&mut self) -> Result<Vec<String>, UpdateError> {
        // Field by field, so the bundle maps can be changed while the keys are borrowed.
        let keys = RoleKeysInForce {
            root: &self.root,
            revoked: revoked_keys(self.revocation.as_ref()),
        };
        let mut dropped = drop_unverified(&self.dir, &mut self.policies, &keys)?;
        dropped.extend(drop_unverified(&self.dir, &mut self.models, &keys)?);
        Ok(dropped)
    }

    /// The trust root in force (check its expiry with `check_current`).
    pub fn trust_root(&self) -> &TrustedRoot {
        &self.root
    }

    /// A role's keys in force: the root's, minus those the revocation list revokes. Verify jobs
    /// and receipts against these.
    pub fn role_keys(&self, role: Role) -> Vec<PublicKey> {
        self.keys_in_force().keys(role)
    }

    /// The policy bundle for (id, version), if exactly that version is in force (an older
    /// version a job may name has been superseded and is refused).
    pub fn policy(&self, id: &str, version: u32) -> Option<&VerifiedPolicyBundle> {
        self.policies
            .get(id)
            .map(|h| &h.proof)
            .filter(|p| p.version() == version)
    }

    /// The policy bundles in force.
    pub fn policies(&self) -> impl Iterator<Item = &VerifiedPolicyBundle> {
        self.policies.values().map(|h| &h.proof)
    }

    /// The model bundles in force.
    pub fn models(&self) -> impl Iterator<Item = &VerifiedModelBundle> {
        self.models.values().map(|h| &h.proof)
    }

    /// The model bundle in force for `id`.
    pub fn model(&self, id: &str) -> Option<&VerifiedModelBundle> {
        self.models.get(id).map(|h| &h.proof)
    }

    /// The revocation list in force, if any.
    pub fn revocation(&self) -> Option<&VerifiedRevocation> {
        self.revocation.as_ref().map(|h| &h.proof)
    }

    /// Whether the revocation list in force names `item`.
    pub fn is_revoked(&self, item: Revocable<'_>) -> bool {
        let Some(list) = self.revocation() else {
            return false;
        };
        let list = list.list();
        match item {
            Revocable::Key(k) => list.keys.contains(k),
            Revocable::Gateway(g) => list.gateways.contains(g),
            Revocable::Job(j) => list.jobs.contains(j),
        }
    }

    /// Fails when no revocation list is in force or it has expired at `now_s`. Once a gateway
    /// holds a list, the lifecycle refuses new jobs while it is expired (a frozen feed must not
    /// hide a revocation); a gateway whose hub has never published one accepts jobs without.
    pub fn check_revocation_current(&self, now_s: u64) -> Result<(), UpdateError> {
        self.revocation()
            .ok_or(UpdateError::NoRevocationList)?
            .check_current(now_s)
            .map_err(UpdateError::RevocationExpired)
    }
}

/// The anti-rollback rule as an error for rollback and equivocation.
fn check(
    what: &str,
    current: Option<(u64, [u8; 32])>,
    new: (u64, [u8; 32]),
) -> Result<Freshness, UpdateError> {
    match freshness(current, new) {
        Freshness::Rollback => Err(UpdateError::Rollback {
            what: what.to_owned(),
            current: current.map_or(0, |c| c.0),
            offered: new.0,
        }),
        Freshness::Equivocation => Err(UpdateError::Equivocation {
            what: what.to_owned(),
            version: new.0,
        }),
        f => Ok(f),
    }
}

#[cfg(test)]
mod tests;

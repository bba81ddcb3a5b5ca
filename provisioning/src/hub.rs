//! The hub home: the directory that holds a hub's keys, its pinned trust root and the job sequence
//! numbers it has issued to each gateway.
//!
//! ```text
//! HUB/
//!   trust-root.cbor        the signed root (COSE_Sign1), pinned on every gateway at provisioning
//!   trust-root.json        a readable view of it (never signed, never read back)
//!   keys/<role>-<n>.pem    PKCS#8 P-256 private keys, mode 0600 (an HSM in production)
//!   seq/<gateway-id>       the last job sequence number issued to that gateway
//! ```
//!
//! Writes go to a temporary file in the same directory, are fsync'd, then renamed, so a crash
//! never leaves a half-written key, root or sequence number.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use dosegate_core::envelope::{self, ContentType, KeyId, PublicKey, Signer, SoftwareKey};
use dosegate_core::prescription;
use dosegate_core::trust::{Role, RoleSpec, Roles, TrustRoot, TrustedRoot};
use p256::ecdsa::SigningKey;
use p256::pkcs8::{DecodePrivateKey as _, EncodePrivateKey as _, LineEnding};

/// How many keys each role gets and how many must sign.
#[derive(Debug, Clone, Copy)]
pub struct RoleShape {
    /// Keys generated for the role.
    pub keys: u32,
    /// Signatures required.
    pub threshold: u32,
}

/// Options of `dosegate-hub init`.
#[derive(Debug, Clone)]
pub struct InitOptions {
    /// The hub's identity.
    pub hub_id: String,
    /// Shape of the `root` role.
    pub root: RoleShape,
    /// Shape of the `jobs` role.
    pub jobs: RoleShape,
    /// Lifetime of the root, seconds.
    pub lifetime_s: u64,
    /// Current time, Unix seconds.
    pub now: u64,
}

/// An opened hub home.
#[derive(Debug)]
pub struct HubHome {
    dir: PathBuf,
}

/// Writes `bytes` to `path` atomically (temp file, fsync, rename, fsync of the directory).
pub fn write_atomic(path: &Path, bytes: &[u8], private: bool) -> Result<()> {
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("file")
    ));
    let mut options = fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt as _;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    let mut file = options
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&tmp, path).with_context(|| format!("cannot write {}", path.display()))?;
    fs::File::open(dir)?.sync_all()?;
    Ok(())
}

fn generate_key() -> SoftwareKey {
    SoftwareKey::from_signing_key(SigningKey::random(&mut rand_core::OsRng))
}

impl HubHome {
    /// Creates a new hub home with fresh keys and a version-1 trust root. Refuses to overwrite.
    pub fn init(dir: &Path, opts: &InitOptions) -> Result<Self> {
        prescription::Prescription::check_identifier("hub id", &opts.hub_id)?;
        for (name, shape) in [("root", opts.root), ("jobs", opts.jobs)] {
            if shape.threshold == 0 || shape.threshold > shape.keys || shape.keys > 16 {
                bail!(
                    "{name}: threshold {} of {} keys is not possible (1 ≤ threshold ≤ keys ≤ 16)",
                    shape.threshold,
                    shape.keys
                );
            }
        }
        if dir.join("trust-root.cbor").exists() {
            bail!(
                "{} already holds a hub (trust-root.cbor exists); refusing to overwrite its keys",
                dir.display()
            );
        }
        fs::create_dir_all(dir.join("keys"))?;
        fs::create_dir_all(dir.join("seq"))?;
        let home = Self {
            dir: dir.to_path_buf(),
        };
        let mut keys = BTreeMap::new();
        let mut specs: BTreeMap<Role, RoleSpec> = BTreeMap::new();
        let mut root_signers = Vec::new();
        for role in Role::ALL {
            let shape = match role {
                Role::Root => opts.root,
                Role::Jobs => opts.jobs,
                _ => RoleShape {
                    keys: 1,
                    threshold: 1,
                },
            };
            let mut ids = Vec::new();
            for n in 1..=shape.keys {
                let key = generate_key();
                let public = key.public_key();
                home.store_key(role, n, &key)?;
                keys.insert(
                    public.key_id(),
                    serde_bytes::ByteBuf::from(public.to_sec1()),
                );
                ids.push(public.key_id());
                if role == Role::Root {
                    root_signers.push(key);
                }
            }
            ids.sort();
            specs.insert(
                role,
                RoleSpec {
                    keyids: ids,
                    threshold: shape.threshold,
                },
            );
        }
        let mut take = |role: Role| specs.remove(&role).context("role missing");
        let root = TrustRoot {
            keys,
            roles: Roles {
                jobs: take(Role::Jobs)?,
                root: take(Role::Root)?,
                models: take(Role::Models)?,
                policies: take(Role::Policies)?,
                revocation: take(Role::Revocation)?,
            },
            hub_id: opts.hub_id.clone(),
            expires: opts.now.saturating_add(opts.lifetime_s),
            version: 1,
        };
        let signers: Vec<&dyn Signer> = root_signers
            .iter()
            .take(usize::try_from(opts.root.threshold)?)
            .map(|k| k as &dyn Signer)
            .collect();
        let bytes = envelope::sign(ContentType::TrustRoot, &root.to_cbor()?, &signers)?;
        // Prove the root we just wrote is one a gateway would pin.
        TrustedRoot::pin(&bytes, opts.now).context("the new trust root does not verify")?;
        write_atomic(&dir.join("trust-root.cbor"), &bytes, false)?;
        write_atomic(
            &dir.join("trust-root.json"),
            serde_json::to_string_pretty(&root_view(&root))?.as_bytes(),
            false,
        )?;
        Ok(home)
    }

    /// Opens an existing hub home.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("trust-root.cbor").is_file() {
            bail!(
                "{} is not a hub home (no trust-root.cbor); create one with `dosegate-hub init --dir {}`",
                dir.display(),
                dir.display()
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The pinned trust root, checked as a gateway would at `now`.
    pub fn trusted_root(&self, now: u64) -> Result<TrustedRoot> {
        let path = self.dir.join("trust-root.cbor");
        let bytes = fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        TrustedRoot::pin(&bytes, now).with_context(|| format!("{} does not verify", path.display()))
    }

    fn key_path(&self, role: Role, n: u32) -> PathBuf {
        self.dir
            .join("keys")
            .join(format!("{}-{n}.pem", role.name()))
    }

    fn store_key(&self, role: Role, n: u32, key: &SoftwareKey) -> Result<()> {
        let signing = SigningKey::from_bytes(&key.to_bytes().into())?;
        let pem = signing
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(|e| anyhow::anyhow!("cannot encode key: {e}"))?;
        write_atomic(&self.key_path(role, n), pem.as_bytes(), true)
    }

    /// Loads the private keys of a role that are present in this home, checked against the root.
    pub fn role_keys(&self, role: Role, root: &TrustedRoot) -> Result<Vec<SoftwareKey>> {
        let listed: Vec<KeyId> = root.role_keys(role).iter().map(PublicKey::key_id).collect();
        let mut out = Vec::new();
        for n in 1..=16 {
            let path = self.key_path(role, n);
            if !path.exists() {
                continue;
            }
            let pem = fs::read_to_string(&path)?;
            let signing = SigningKey::from_pkcs8_pem(&pem)
                .map_err(|e| anyhow::anyhow!("{}: not a PKCS#8 P-256 key: {e}", path.display()))?;
            let key = SoftwareKey::from_signing_key(signing);
            if !listed.contains(&key.public_key().key_id()) {
                bail!(
                    "{} is not a {} key of the pinned trust root",
                    path.display(),
                    role.name()
                );
            }
            out.push(key);
        }
        if out.is_empty() {
            bail!(
                "no {} keys in {}",
                role.name(),
                self.dir.join("keys").display()
            );
        }
        Ok(out)
    }

    /// Reserves the next job sequence number for a gateway (persisted before it is used).
    pub fn next_seq(&self, gateway_id: &str) -> Result<u64> {
        prescription::Prescription::check_identifier("gateway id", gateway_id)?;
        let path = self.dir.join("seq").join(gateway_id);
        let last = match fs::read_to_string(&path) {
            Ok(text) => text
                .trim()
                .parse::<u64>()
                .with_context(|| format!("{} is corrupt", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e.into()),
        };
        let next = last.checked_add(1).context("sequence exhausted")?;
        write_atomic(&path, format!("{next}\n").as_bytes(), false)?;
        Ok(next)
    }
}

/// A readable JSON view of a trust root.
pub fn root_view(root: &TrustRoot) -> serde_json::Value {
    let role = |r: Role| {
        let spec = root.roles.get(r);
        serde_json::json!({
            "threshold": spec.threshold,
            "keyids": spec.keyids.iter().map(KeyId::to_hex).collect::<Vec<_>>(),
        })
    };
    serde_json::json!({
        "hub_id": root.hub_id,
        "version": root.version,
        "expires": root.expires,
        "expires_utc": humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_secs(root.expires)
        ).to_string(),
        "keys": root.keys.iter().map(|(id, sec1)| (id.to_hex(), hex::encode(sec1))).collect::<BTreeMap<_, _>>(),
        "roles": Role::ALL.iter().map(|r| (r.name(), role(*r))).collect::<BTreeMap<_, _>>(),
    })
}

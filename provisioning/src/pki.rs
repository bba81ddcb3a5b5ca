//! The fleet link's X.509 PKI: a hub CA (P-256), the broker's server certificate, one client
//! certificate per gateway (CN = gateway id, which the broker uses as MQTT username and client id)
//! and the hub's own client certificate.
//!
//! ```text
//! HUB/pki/
//!   ca.pem  ca.key            the fleet CA (key 0600; offline in production)
//!   broker.pem broker.key     server certificate for the broker (SAN: the names given)
//!   hub.pem hub.key           the hub's MQTT client (CN `hub.operator`, never a valid gateway id)
//!   gateways/<gw>.pem .key    one client certificate per gateway (.key: development mode only)
//!   gateways/<gw>.enroll      the gateway's verified enrollment request (TPM-held AK + mTLS key)
//! ```
//!
//! Owns certificate issuance only; it does not run the broker ([`crate::broker`]) or talk MQTT
//! ([`crate::fleet`]). A gateway's key belongs in its TPM: [`Pki::enroll_gateway`] certifies the
//! TPM-held key of a verified enrollment request (no private key at the hub), and keeps the
//! request so the hub can verify the gateway's quotes with its AK; [`Pki::issue_gateway`]
//! generates a file key for the insecure development mode and the demo. Files are written
//! atomically (temp, fsync, rename).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use dosegate_core::fleet::GatewayId;
use dosegate_core::fleet::enroll::{EnrolledIdentity, verify_request};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData, SanType,
};
use time::{Duration, OffsetDateTime};

use crate::hub::write_atomic;

/// The CN (and so the broker username) of the hub's MQTT client. Contains a `.`, so no gateway id
/// can ever equal it and inherit the hub's ACL.
pub const HUB_CLIENT_CN: &str = "hub.operator";
/// The CN of the hub's one-shot publisher (jobs, commands), so that publishing never takes over
/// the serving hub's session (the broker uses the CN as client id).
pub const HUB_PUBLISHER_CN: &str = "hub.publisher";
const CA_CN: &str = "DoseGate fleet CA";

/// Paths of one certificate and its key.
#[derive(Debug, Clone)]
pub struct CertFiles {
    /// PEM certificate.
    pub cert: PathBuf,
    /// PEM PKCS#8 private key.
    pub key: PathBuf,
}

/// The fleet PKI kept under `HUB/pki`.
#[derive(Debug, Clone)]
pub struct Pki {
    dir: PathBuf,
}

fn ca_params(now: OffsetDateTime, years: i64) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, CA_CN);
    dn.push(DnType::OrganizationName, "DoseGate hub");
    params.distinguished_name = dn;
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(365 * years);
    Ok(params)
}

fn leaf_params(
    cn: &str,
    sans: &[String],
    server: bool,
    now: OffsetDateTime,
    days: i64,
) -> Result<CertificateParams> {
    let mut params = CertificateParams::new(Vec::<String>::new())?;
    for san in sans {
        params.subject_alt_names.push(match san.parse() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) => SanType::DnsName(san.as_str().try_into()?),
        });
    }
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, cn);
    params.distinguished_name = dn;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![if server {
        ExtendedKeyUsagePurpose::ServerAuth
    } else {
        ExtendedKeyUsagePurpose::ClientAuth
    }];
    params.use_authority_key_identifier_extension = true;
    params.not_before = now - Duration::hours(1);
    params.not_after = now + Duration::days(days);
    Ok(params)
}

impl Pki {
    /// Creates the CA under `dir` (refuses if one exists).
    pub fn init(dir: &Path, now_unix: u64) -> Result<Self> {
        if dir.join("ca.pem").exists() {
            bail!(
                "{} already holds a fleet CA; refusing to replace it",
                dir.display()
            );
        }
        fs::create_dir_all(dir.join("gateways"))?;
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = ca_params(unix(now_unix)?, 10)?.self_signed(&key)?;
        write_atomic(&dir.join("ca.key"), key.serialize_pem().as_bytes(), true)?;
        write_atomic(&dir.join("ca.pem"), cert.pem().as_bytes(), false)?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// Opens an existing PKI directory.
    pub fn open(dir: &Path) -> Result<Self> {
        if !dir.join("ca.pem").is_file() {
            bail!(
                "{} holds no fleet CA (run `dosegate-hub pki-init`)",
                dir.display()
            );
        }
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    /// The CA certificate (PEM path).
    pub fn ca_cert(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    /// The PKI directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Signs a certificate with `params` over `subject`'s public key.
    fn certify(&self, params: &CertificateParams, subject: &impl PublicKeyData) -> Result<String> {
        let ca_pem = fs::read_to_string(self.dir.join("ca.key")).context("reading the CA key")?;
        let ca_key = KeyPair::from_pem(&ca_pem)?;
        // The issuer is rebuilt from the same parameters as the CA certificate (same subject and
        // key), so the leaf's issuer name and authority key id match the stored CA.
        let issuer = Issuer::new(ca_params(OffsetDateTime::UNIX_EPOCH, 10)?, ca_key);
        Ok(params.signed_by(subject, &issuer)?.pem())
    }

    fn issue(&self, name: &Path, params: &CertificateParams) -> Result<CertFiles> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let cert = self.certify(params, &key)?;
        let files = CertFiles {
            cert: name.with_extension("pem"),
            key: name.with_extension("key"),
        };
        write_atomic(&files.key, key.serialize_pem().as_bytes(), true)?;
        write_atomic(&files.cert, cert.as_bytes(), false)?;
        Ok(files)
    }

    /// Issues the broker's server certificate for `names` (DNS names or IP addresses).
    pub fn issue_broker(&self, names: &[String], now_unix: u64) -> Result<CertFiles> {
        if names.is_empty() {
            bail!("the broker certificate needs at least one name (e.g. localhost, 127.0.0.1)");
        }
        let params = leaf_params("dosegate-broker", names, true, unix(now_unix)?, 825)?;
        self.issue(&self.dir.join("broker"), &params)
    }

    /// Issues the hub's MQTT client certificates: the serving client ([`HUB_CLIENT_CN`], files
    /// `hub.*`) and the publisher ([`HUB_PUBLISHER_CN`], files `publisher.*`).
    pub fn issue_hub_clients(&self, now_unix: u64) -> Result<(CertFiles, CertFiles)> {
        let now = unix(now_unix)?;
        let hub = self.issue(
            &self.dir.join("hub"),
            &leaf_params(HUB_CLIENT_CN, &[], false, now, 825)?,
        )?;
        let publisher = self.issue(
            &self.dir.join("publisher"),
            &leaf_params(HUB_PUBLISHER_CN, &[], false, now, 825)?,
        )?;
        Ok((hub, publisher))
    }

    /// The publisher's files.
    pub fn publisher_files(&self) -> CertFiles {
        CertFiles {
            cert: self.dir.join("publisher.pem"),
            key: self.dir.join("publisher.key"),
        }
    }

    /// Issues a gateway's client certificate (CN = gateway id).
    pub fn issue_gateway(&self, gateway: &GatewayId, now_unix: u64) -> Result<CertFiles> {
        let params = leaf_params(gateway.as_str(), &[], false, unix(now_unix)?, 825)?;
        self.issue(&self.dir.join("gateways").join(gateway.as_str()), &params)
    }

    /// Enrolls a gateway whose keys are in its TPM: verifies the enrollment `request` (AK
    /// attributes, the mTLS key's proof of possession), checks it names `gateway`, issues the
    /// client certificate (CN = gateway id) for the TPM-held mTLS key, and keeps the request
    /// beside it. No private key is made or stored. Returns the certificate's path.
    pub fn enroll_gateway(
        &self,
        gateway: &GatewayId,
        request: &[u8],
        now_unix: u64,
    ) -> Result<PathBuf> {
        let identity =
            verify_request(request).map_err(|e| anyhow::anyhow!("{e} ({})", e.code()))?;
        if identity.gateway() != gateway {
            bail!(
                "the enrollment request is for gateway {}, not {gateway}",
                identity.gateway()
            );
        }
        let params = leaf_params(gateway.as_str(), &[], false, unix(now_unix)?, 825)?;
        let cert = self.certify(&params, &TpmHeldKey(identity.tls_key().to_sec1()))?;
        let files = self.gateway_files(gateway);
        // A development key from an earlier `issue_gateway` must not outlive the TPM enrollment.
        if files.key.exists() {
            fs::remove_file(&files.key)?;
        }
        write_atomic(&files.cert.with_extension("enroll"), request, false)?;
        write_atomic(&files.cert, cert.as_bytes(), false)?;
        Ok(files.cert)
    }

    /// The enrolled TPM identity of a gateway (its stored request, verified again).
    pub fn gateway_identity(&self, gateway: &GatewayId) -> Result<EnrolledIdentity> {
        let path = self.gateway_files(gateway).cert.with_extension("enroll");
        let bytes = fs::read(&path).with_context(|| {
            format!(
                "gateway {gateway} has no TPM enrollment ({}): run `dosegate-hub fleet enroll --request`",
                path.display()
            )
        })?;
        let identity = verify_request(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: {e} ({})", path.display(), e.code()))?;
        if identity.gateway() != gateway {
            bail!("{} names gateway {}", path.display(), identity.gateway());
        }
        Ok(identity)
    }

    /// The files of an issued gateway certificate.
    pub fn gateway_files(&self, gateway: &GatewayId) -> CertFiles {
        let base = self.dir.join("gateways").join(gateway.as_str());
        CertFiles {
            cert: base.with_extension("pem"),
            key: base.with_extension("key"),
        }
    }

    /// The hub client's files.
    pub fn hub_files(&self) -> CertFiles {
        CertFiles {
            cert: self.dir.join("hub.pem"),
            key: self.dir.join("hub.key"),
        }
    }

    /// The broker's files.
    pub fn broker_files(&self) -> CertFiles {
        CertFiles {
            cert: self.dir.join("broker.pem"),
            key: self.dir.join("broker.key"),
        }
    }
}

/// A public key held elsewhere (the gateway's TPM), as the subject of a certificate.
struct TpmHeldKey(Vec<u8>);

impl PublicKeyData for TpmHeldKey {
    fn der_bytes(&self) -> &[u8] {
        &self.0
    }

    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

fn unix(now: u64) -> Result<OffsetDateTime> {
    Ok(OffsetDateTime::from_unix_timestamp(i64::try_from(now)?)?)
}

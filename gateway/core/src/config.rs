//! The gateway's configuration: one TOML file, parsed from `&str` into a typed [`Config`] and
//! validated once, at start.
//!
//! This module owns the schema (unknown keys are refused) and the checks that need no I/O: the
//! gateway id's shape, paths being absolute and normalised, device paths living under `/dev`, and
//! the size cap on the file itself. It does not open files or probe devices: the daemon reads the
//! bytes and, later, opens the devices named here.
//!
//! Sections grow with the gateway: the fleet link, job limits and models come with later issues.
//! Dangerous development overrides only ever live under `[insecure]`; the daemon logs a warning
//! on every start while that table is present, even when it is empty.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Largest accepted configuration file, in bytes.
pub const MAX_CONFIG_BYTES: usize = 64 * 1024;
/// Longest accepted gateway id, in bytes.
pub const MAX_GATEWAY_ID_LEN: usize = 64;
/// Longest accepted path, in bytes.
pub const MAX_PATH_LEN: usize = 256;

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The file is larger than [`MAX_CONFIG_BYTES`].
    #[error("configuration is {len} bytes; at most {MAX_CONFIG_BYTES}")]
    TooLarge {
        /// Its size.
        len: usize,
    },
    /// Not valid TOML for this schema (unknown keys and missing sections included).
    #[error("configuration is not valid: {reason}")]
    Syntax {
        /// What the TOML parser reported (with line and column).
        reason: String,
    },
    /// The gateway id is empty, too long, or has characters outside `[a-z0-9-]`, or starts or
    /// ends with `-`.
    #[error(
        "gateway_id {value:?} is not valid (1–{MAX_GATEWAY_ID_LEN} of a–z 0–9 -, not starting or ending with -)"
    )]
    BadGatewayId {
        /// The value.
        value: String,
    },
    /// A path is relative, not normalised (`.`/`..`/`//`), too long, or not valid UTF-8.
    #[error(
        "{field} = {value:?} must be an absolute, normalised path of at most {MAX_PATH_LEN} bytes"
    )]
    BadPath {
        /// The key, e.g. `paths.state_dir`.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A device path does not live under `/dev`.
    #[error("{field} = {value:?} is not a device under /dev")]
    NotADevice {
        /// The key, e.g. `printer.serial`.
        field: &'static str,
        /// The value.
        value: String,
    },
    /// A number is outside its range.
    #[error("{field} = {value} is outside {}..={}", range.min, range.max)]
    OutOfRange {
        /// The key, e.g. `fleet.keep_alive_s`.
        field: &'static str,
        /// The value.
        value: u64,
        /// The accepted range.
        range: Range,
    },
    /// The broker host is not a DNS name or IP address the TLS certificate could name.
    #[error("fleet.broker_host = {value:?} is not a host name (1–253 of a–z A–Z 0–9 . -)")]
    BadHost {
        /// The value.
        value: String,
    },
    /// The printer's baud rate is not one Marlin boards use.
    #[error("printer.baud = {value} is not one of {allowed:?}")]
    BadBaud {
        /// The value.
        value: u32,
        /// The accepted rates.
        allowed: &'static [u32],
    },
    /// The printer's receive buffer is outside [`RX_BUFFER_BYTES_MIN`]`..=`[`RX_BUFFER_BYTES_MAX`].
    #[error(
        "printer.rx_buffer_bytes = {value} is outside {RX_BUFFER_BYTES_MIN}..={RX_BUFFER_BYTES_MAX}"
    )]
    BadRxBuffer {
        /// The value.
        value: u32,
    },
    /// A firmware baseline digest is not 64 hex digits.
    #[error("{field} = {value:?} is not a SHA-256 digest (64 hex digits)")]
    BadDigest {
        /// The key, e.g. `printer.m115_sha256`.
        field: &'static str,
        /// The value (at most 80 characters).
        value: String,
    },
}

/// A number outside its accepted range.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Range {
    /// Smallest accepted value.
    pub min: u64,
    /// Largest accepted value.
    pub max: u64,
}

/// Smallest accepted `printer.rx_buffer_bytes`.
pub const RX_BUFFER_BYTES_MIN: u32 = 32;
/// Largest accepted `printer.rx_buffer_bytes`.
pub const RX_BUFFER_BYTES_MAX: u32 = 4096;

/// Baud rates Marlin boards are built with.
pub const BAUD_RATES: &[u32] = &[57_600, 115_200, 250_000, 500_000, 1_000_000];

/// A gateway's identity as the hub knows it (`spoke/{gateway_id}/…` topics, jobs' `gateway_id`):
/// lowercase letters, digits and inner dashes only.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayId(String);

impl GatewayId {
    /// Checks and wraps an id.
    pub fn parse(value: &str) -> Result<Self, ConfigError> {
        let ok_chars = value
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if value.is_empty()
            || value.len() > MAX_GATEWAY_ID_LEN
            || !ok_chars
            || value.starts_with('-')
            || value.ends_with('-')
        {
            return Err(ConfigError::BadGatewayId {
                value: value.to_owned(),
            });
        }
        Ok(Self(value.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Where the gateway keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Paths {
    /// The writable state directory (ledger, spool); on the appliance `/var/lib/dosegate`.
    pub state_dir: PathBuf,
}

/// The printer's serial link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Printer {
    /// The serial device, e.g. `/dev/ttyUSB0` (`/dev/ttyS1` under QEMU).
    pub serial: PathBuf,
    /// Line speed in baud.
    pub baud: u32,
    /// The firmware's serial receive buffer, bytes (Marlin's `RX_BUFFER_SIZE`; 128 unless the
    /// board was built otherwise): a commissioning fact. The streamer never has more unread bytes
    /// in flight than this less one, because Marlin drops what overflows it.
    pub rx_buffer_bytes: u32,
    /// Commissioning baseline of the firmware's `M115` answer (SHA-256); when set, a printer
    /// answering otherwise is refused before any program line is sent.
    pub m115_sha256: Option<[u8; 32]>,
    /// Commissioning baseline of the firmware's `M503` answer (stored settings), as above.
    pub m503_sha256: Option<[u8; 32]>,
}

/// The TPM the gateway's keys live in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tpm {
    /// The TPM resource-manager device, normally `/dev/tpmrm0`.
    pub device: PathBuf,
}

/// Development overrides. Its presence alone makes the daemon warn at every start; the overrides
/// themselves arrive with the modules they weaken (software keys with the TPM adapter, plain TCP
/// with the fleet link), and until then the table accepts no keys.
/// Where the signed material the gateway holds lives (read-only on the appliance).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Holdings {
    /// The pinned hub trust root (`trust-root.cbor`).
    pub trust_root: PathBuf,
    /// Policies, one `<id>.toml` per product × printer.
    pub policies_dir: PathBuf,
    /// PAT models, one `<id>.cbor` each.
    pub models_dir: PathBuf,
}

/// The fleet link: the hub's broker and this gateway's certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fleet {
    /// The broker's host name (must match its certificate).
    pub broker_host: String,
    /// The broker's TLS port.
    pub broker_port: u16,
    /// The fleet CA certificate (PEM) that signed the broker's certificate.
    pub ca: PathBuf,
    /// This gateway's client certificate (PEM), issued for its TPM-held key.
    pub cert: PathBuf,
    /// MQTT keep-alive, seconds.
    pub keep_alive_s: u64,
    /// Events not receipted after this long are published again, seconds.
    pub resend_after_s: u64,
    /// New jobs are refused while the oldest unreceipted event is older than this, seconds.
    pub max_backlog_age_s: u64,
}

/// Limits applied to incoming jobs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Jobs {
    /// Clock skew tolerated on a job's `issued_at`, seconds.
    pub clock_skew_s: u64,
}

/// The spectrometer's drop folder (the vendor software's export directory).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpectrometerConfig {
    /// The folder the gateway writes measurement requests to and reads JCAMP-DX exports from.
    pub drop_dir: PathBuf,
    /// How long to wait for every unit's spectrum after printing, seconds.
    pub timeout_s: u64,
}

/// The balance, when the spoke has one on a serial port (MT-SICS).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BalanceConfig {
    /// Its serial device.
    pub serial: PathBuf,
}

/// Dangerous development overrides. Each one replaces a hardware root of trust with software:
/// a gateway with any of them must never release a dose to a patient.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Insecure {
    /// The mTLS client key as a PKCS#8 PEM file instead of the TPM.
    pub tls_key: Option<PathBuf>,
    /// A TSS TCTI for a software TPM (e.g. `swtpm:host=127.0.0.1,port=2321`) instead of
    /// `tpm.device`.
    pub tpm_tcti: Option<String>,
}

/// A validated gateway configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// This gateway's id.
    pub gateway_id: GatewayId,
    /// Where state lives.
    pub paths: Paths,
    /// The printer link.
    pub printer: Printer,
    /// The TPM.
    pub tpm: Tpm,
    /// The trust root, policies and models this gateway holds.
    pub holdings: Holdings,
    /// The fleet link; `None`: not connected to a hub (no job can arrive).
    pub fleet: Option<Fleet>,
    /// Limits on incoming jobs.
    pub jobs: Jobs,
    /// The spectrometer; `None`: units cannot be measured, so none is released.
    pub spectrometer: Option<SpectrometerConfig>,
    /// The balance; `None`: % w/w predictions use the nominal unit mass.
    pub balance: Option<BalanceConfig>,
    /// `Some` when the `[insecure]` table is present.
    pub insecure: Option<Insecure>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    gateway_id: String,
    paths: RawPaths,
    printer: RawPrinter,
    tpm: RawTpm,
    #[serde(default)]
    holdings: RawHoldings,
    fleet: Option<RawFleet>,
    #[serde(default)]
    jobs: RawJobs,
    spectrometer: Option<RawSpectrometer>,
    balance: Option<RawBalance>,
    insecure: Option<RawInsecure>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHoldings {
    #[serde(default = "default_trust_root")]
    trust_root: String,
    #[serde(default = "default_policies_dir")]
    policies_dir: String,
    #[serde(default = "default_models_dir")]
    models_dir: String,
}

impl Default for RawHoldings {
    fn default() -> Self {
        Self {
            trust_root: default_trust_root(),
            policies_dir: default_policies_dir(),
            models_dir: default_models_dir(),
        }
    }
}

fn default_trust_root() -> String {
    "/etc/dosegate/trust-root.cbor".to_owned()
}
fn default_policies_dir() -> String {
    "/etc/dosegate/policies".to_owned()
}
fn default_models_dir() -> String {
    "/usr/share/dosegate/models".to_owned()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFleet {
    broker_host: String,
    #[serde(default = "default_broker_port")]
    broker_port: u16,
    ca: String,
    cert: String,
    #[serde(default = "default_keep_alive")]
    keep_alive_s: u64,
    #[serde(default = "default_resend_after")]
    resend_after_s: u64,
    #[serde(default = "default_backlog_age")]
    max_backlog_age_s: u64,
}

fn default_broker_port() -> u16 {
    8883
}
fn default_keep_alive() -> u64 {
    30
}
fn default_resend_after() -> u64 {
    30
}
fn default_backlog_age() -> u64 {
    24 * 3600
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawJobs {
    #[serde(default = "default_skew")]
    clock_skew_s: u64,
}

impl Default for RawJobs {
    fn default() -> Self {
        Self {
            clock_skew_s: default_skew(),
        }
    }
}

fn default_skew() -> u64 {
    300
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpectrometer {
    drop_dir: String,
    #[serde(default = "default_measure_timeout")]
    timeout_s: u64,
}

fn default_measure_timeout() -> u64 {
    900
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBalance {
    serial: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawInsecure {
    tls_key: Option<String>,
    tpm_tcti: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPaths {
    state_dir: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPrinter {
    serial: String,
    #[serde(default = "default_baud")]
    baud: u32,
    #[serde(default = "default_rx_buffer")]
    rx_buffer_bytes: u32,
    m115_sha256: Option<String>,
    m503_sha256: Option<String>,
}

fn default_rx_buffer() -> u32 {
    128
}

fn digest(field: &'static str, value: Option<&str>) -> Result<Option<[u8; 32]>, ConfigError> {
    let Some(value) = value else { return Ok(None) };
    let bad = || ConfigError::BadDigest {
        field,
        value: value.chars().take(80).collect(),
    };
    if value.len() != 64 || !value.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let bytes = hex::decode(value).map_err(|_| bad())?;
    <[u8; 32]>::try_from(bytes.as_slice())
        .map(Some)
        .map_err(|_| bad())
}

fn default_baud() -> u32 {
    115_200
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTpm {
    #[serde(default = "default_tpm")]
    device: String,
}

fn default_tpm() -> String {
    "/dev/tpmrm0".to_owned()
}

impl Config {
    /// Parses and validates a configuration file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        if text.len() > MAX_CONFIG_BYTES {
            return Err(ConfigError::TooLarge { len: text.len() });
        }
        let raw: RawConfig = toml::from_str(text).map_err(|e| ConfigError::Syntax {
            reason: e.to_string(),
        })?;
        let baud = raw.printer.baud;
        if !BAUD_RATES.contains(&baud) {
            return Err(ConfigError::BadBaud {
                value: baud,
                allowed: BAUD_RATES,
            });
        }
        let rx_buffer_bytes = raw.printer.rx_buffer_bytes;
        if !(RX_BUFFER_BYTES_MIN..=RX_BUFFER_BYTES_MAX).contains(&rx_buffer_bytes) {
            return Err(ConfigError::BadRxBuffer {
                value: rx_buffer_bytes,
            });
        }
        Ok(Self {
            gateway_id: GatewayId::parse(&raw.gateway_id)?,
            paths: Paths {
                state_dir: absolute("paths.state_dir", &raw.paths.state_dir)?,
            },
            printer: Printer {
                serial: device("printer.serial", &raw.printer.serial)?,
                baud,
                rx_buffer_bytes,
                m115_sha256: digest("printer.m115_sha256", raw.printer.m115_sha256.as_deref())?,
                m503_sha256: digest("printer.m503_sha256", raw.printer.m503_sha256.as_deref())?,
            },
            tpm: Tpm {
                device: device("tpm.device", &raw.tpm.device)?,
            },
            holdings: Holdings {
                trust_root: absolute("holdings.trust_root", &raw.holdings.trust_root)?,
                policies_dir: absolute("holdings.policies_dir", &raw.holdings.policies_dir)?,
                models_dir: absolute("holdings.models_dir", &raw.holdings.models_dir)?,
            },
            fleet: raw.fleet.map(fleet).transpose()?,
            jobs: Jobs {
                clock_skew_s: ranged("jobs.clock_skew_s", raw.jobs.clock_skew_s, 0, 3600)?,
            },
            spectrometer: raw
                .spectrometer
                .map(|s| -> Result<_, ConfigError> {
                    Ok(SpectrometerConfig {
                        drop_dir: absolute("spectrometer.drop_dir", &s.drop_dir)?,
                        timeout_s: ranged("spectrometer.timeout_s", s.timeout_s, 1, 86_400)?,
                    })
                })
                .transpose()?,
            balance: raw
                .balance
                .map(|b| -> Result<_, ConfigError> {
                    Ok(BalanceConfig {
                        serial: device("balance.serial", &b.serial)?,
                    })
                })
                .transpose()?,
            insecure: raw.insecure.map(insecure).transpose()?,
        })
    }
}

fn fleet(raw: RawFleet) -> Result<Fleet, ConfigError> {
    let host_ok = !raw.broker_host.is_empty()
        && raw.broker_host.len() <= 253
        && raw
            .broker_host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-' || b == b':');
    if !host_ok {
        return Err(ConfigError::BadHost {
            value: raw.broker_host,
        });
    }
    ranged("fleet.broker_port", u64::from(raw.broker_port), 1, 65_535)?;
    Ok(Fleet {
        broker_host: raw.broker_host,
        broker_port: raw.broker_port,
        ca: absolute("fleet.ca", &raw.ca)?,
        cert: absolute("fleet.cert", &raw.cert)?,
        keep_alive_s: ranged("fleet.keep_alive_s", raw.keep_alive_s, 5, 3600)?,
        resend_after_s: ranged("fleet.resend_after_s", raw.resend_after_s, 1, 3600)?,
        max_backlog_age_s: ranged(
            "fleet.max_backlog_age_s",
            raw.max_backlog_age_s,
            60,
            30 * 24 * 3600,
        )?,
    })
}

fn insecure(raw: RawInsecure) -> Result<Insecure, ConfigError> {
    let tls_key = raw
        .tls_key
        .map(|k| absolute("insecure.tls_key", &k))
        .transpose()?;
    if let Some(t) = &raw.tpm_tcti {
        let ok = t.starts_with("swtpm:")
            && t.len() <= MAX_PATH_LEN
            && t.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(ConfigError::Syntax {
                reason: format!(
                    "insecure.tpm_tcti = {t:?} must be an swtpm TCTI (swtpm:host=…,port=…)"
                ),
            });
        }
    }
    Ok(Insecure {
        tls_key,
        tpm_tcti: raw.tpm_tcti,
    })
}

fn ranged(field: &'static str, value: u64, min: u64, max: u64) -> Result<u64, ConfigError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ConfigError::OutOfRange {
            field,
            value,
            range: Range { min, max },
        })
    }
}

fn absolute(field: &'static str, value: &str) -> Result<PathBuf, ConfigError> {
    let bad = || ConfigError::BadPath {
        field,
        value: value.to_owned(),
    };
    // Checked on the text, not with `Path::components`, which silently drops `.` and `//`.
    let normal = value
        .split('/')
        .skip(1)
        .all(|seg| !seg.is_empty() && seg != "." && seg != "..");
    if value.len() > MAX_PATH_LEN || !value.starts_with('/') || !normal {
        return Err(bad());
    }
    let path = Path::new(value);
    Ok(path.to_path_buf())
}

fn device(field: &'static str, value: &str) -> Result<PathBuf, ConfigError> {
    let path = absolute(field, value)?;
    if !path.starts_with("/dev") || path == Path::new("/dev") {
        return Err(ConfigError::NotADevice {
            field,
            value: value.to_owned(),
        });
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
gateway_id = "spoke-0001"

[paths]
state_dir = "/var/lib/dosegate"

[printer]
serial = "/dev/ttyUSB0"

[tpm]
device = "/dev/tpmrm0"
"#;

    fn with(old: &str, new: &str) -> String {
        assert!(GOOD.contains(old), "fixture lacks {old}");
        GOOD.replacen(old, new, 1)
    }

    #[test]
    fn accepts_the_example_with_defaults() {
        let cfg = Config::parse(GOOD).expect("valid");
        assert_eq!(cfg.gateway_id.as_str(), "spoke-0001");
        assert_eq!(cfg.paths.state_dir, PathBuf::from("/var/lib/dosegate"));
        assert_eq!(cfg.printer.serial, PathBuf::from("/dev/ttyUSB0"));
        assert_eq!(cfg.printer.baud, 115_200);
        assert_eq!(cfg.printer.rx_buffer_bytes, 128);
        assert_eq!(cfg.printer.m115_sha256, None);
        assert_eq!(cfg.printer.m503_sha256, None);
        assert_eq!(cfg.tpm.device, PathBuf::from("/dev/tpmrm0"));
        assert_eq!(cfg.insecure, None);
    }

    #[test]
    fn accepts_the_shipped_example_files() {
        for file in [
            "examples/gateway.toml",
            "../os-image/overlay/etc/credstore/dosegate.gateway.toml",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(file);
            let text = std::fs::read_to_string(&path).expect("example present");
            Config::parse(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        }
    }

    #[test]
    fn notes_an_empty_insecure_table() {
        let cfg = Config::parse(&format!("{GOOD}\n[insecure]\n")).expect("valid");
        assert_eq!(cfg.insecure, Some(Insecure::default()));
    }

    #[test]
    fn rejects_unknown_keys_everywhere() {
        for text in [
            format!("{GOOD}\nextra = 1\n"),
            with("[tpm]", "[tpm]\npcr = 23"),
            format!("{GOOD}\n[insecure]\nsoftware_keys = true\n"),
            format!("{GOOD}\n[mqtt]\nhost = \"hub\"\n"),
        ] {
            assert!(
                matches!(Config::parse(&text), Err(ConfigError::Syntax { .. })),
                "{text}"
            );
        }
    }

    #[test]
    fn rejects_a_missing_section() {
        let text = with("[printer]\nserial = \"/dev/ttyUSB0\"\n", "");
        let err = Config::parse(&text).unwrap_err();
        assert!(
            matches!(&err, ConfigError::Syntax { reason } if reason.contains("printer")),
            "{err}"
        );
    }

    #[test]
    fn rejects_malformed_gateway_ids() {
        for id in [
            "",
            "Spoke",
            "spoke_1",
            "-spoke",
            "spoke-",
            "spöke",
            &"a".repeat(65),
        ] {
            let text = with("\"spoke-0001\"", &format!("{id:?}"));
            assert_eq!(
                Config::parse(&text),
                Err(ConfigError::BadGatewayId {
                    value: id.to_owned()
                })
            );
        }
    }

    #[test]
    fn rejects_relative_and_traversing_paths() {
        for value in [
            "var/lib/dosegate",
            "/var/lib/../etc",
            "/var//lib",
            "/var/lib/",
            "/./var",
        ] {
            let text = with("\"/var/lib/dosegate\"", &format!("{value:?}"));
            assert_eq!(
                Config::parse(&text),
                Err(ConfigError::BadPath {
                    field: "paths.state_dir",
                    value: value.to_owned()
                })
            );
        }
    }

    #[test]
    fn rejects_devices_outside_dev() {
        for value in ["/etc/passwd", "/dev", "/devices/x"] {
            let text = with("\"/dev/ttyUSB0\"", &format!("{value:?}"));
            assert_eq!(
                Config::parse(&text),
                Err(ConfigError::NotADevice {
                    field: "printer.serial",
                    value: value.to_owned()
                })
            );
        }
        let text = with("\"/dev/tpmrm0\"", "\"/dev/../tmp/tpm\"");
        assert!(matches!(
            Config::parse(&text),
            Err(ConfigError::BadPath {
                field: "tpm.device",
                ..
            })
        ));
    }

    #[test]
    fn rejects_odd_baud_rates() {
        let text = with(
            "serial = \"/dev/ttyUSB0\"",
            "serial = \"/dev/ttyUSB0\"\nbaud = 9600",
        );
        assert_eq!(
            Config::parse(&text),
            Err(ConfigError::BadBaud {
                value: 9600,
                allowed: BAUD_RATES
            })
        );
    }

    const FULL: &str = r#"
[holdings]
trust_root = "/etc/dosegate/trust-root.cbor"
policies_dir = "/etc/dosegate/policies"
models_dir = "/usr/share/dosegate/models"

[fleet]
broker_host = "hub.example.org"
ca = "/etc/dosegate/fleet-ca.pem"
cert = "/etc/dosegate/gateway.pem"

[jobs]
clock_skew_s = 120

[spectrometer]
drop_dir = "/var/lib/dosegate/spectra"

[balance]
serial = "/dev/ttyUSB1"

[insecure]
tls_key = "/var/lib/dosegate/dev-tls.key"
tpm_tcti = "swtpm:host=127.0.0.1,port=2321"
"#;

    #[test]
    fn reads_every_section_with_defaults() {
        let cfg = Config::parse(&format!("{GOOD}{FULL}")).expect("valid");
        let fleet = cfg.fleet.expect("fleet");
        assert_eq!(fleet.broker_port, 8883);
        assert_eq!(fleet.keep_alive_s, 30);
        assert_eq!(cfg.jobs.clock_skew_s, 120);
        assert_eq!(cfg.spectrometer.expect("spectrometer").timeout_s, 900);
        assert_eq!(
            cfg.balance.expect("balance").serial,
            PathBuf::from("/dev/ttyUSB1")
        );
        let insecure = cfg.insecure.expect("insecure");
        assert_eq!(
            insecure.tpm_tcti.as_deref(),
            Some("swtpm:host=127.0.0.1,port=2321")
        );
        let bare = Config::parse(GOOD).expect("valid");
        assert_eq!(bare.fleet, None);
        assert_eq!(
            bare.holdings.policies_dir,
            PathBuf::from("/etc/dosegate/policies")
        );
        assert_eq!(bare.jobs.clock_skew_s, 300);
    }

    #[test]
    fn refuses_out_of_range_numbers_bad_hosts_and_foreign_tctis() {
        let full = format!("{GOOD}{FULL}");
        for (old, new, code) in [
            (
                "clock_skew_s = 120",
                "clock_skew_s = 7200",
                "jobs.clock_skew_s",
            ),
            (
                "cert = \"/etc/dosegate/gateway.pem\"",
                "cert = \"/etc/dosegate/gateway.pem\"\nkeep_alive_s = 1",
                "fleet.keep_alive_s",
            ),
            (
                "drop_dir = \"/var/lib/dosegate/spectra\"",
                "drop_dir = \"/var/lib/dosegate/spectra\"\ntimeout_s = 0",
                "spectrometer.timeout_s",
            ),
        ] {
            let err = Config::parse(&full.replacen(old, new, 1)).unwrap_err();
            assert!(
                matches!(&err, ConfigError::OutOfRange { field, .. } if *field == code),
                "{err}"
            );
        }
        let err = Config::parse(&full.replacen("hub.example.org", "hub example", 1)).unwrap_err();
        assert!(matches!(err, ConfigError::BadHost { .. }), "{err}");
        let err =
            Config::parse(&full.replacen("swtpm:host", "device:/dev/tpm0 host", 1)).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err}");
        let err = Config::parse(&full.replacen("/dev/ttyUSB1", "/etc/ttyUSB1", 1)).unwrap_err();
        assert!(matches!(
            err,
            ConfigError::NotADevice {
                field: "balance.serial",
                ..
            }
        ));
    }

    #[test]
    fn reads_the_printers_receive_buffer_and_firmware_baseline() {
        let m115 = "ab".repeat(32);
        let m503 = "0F".repeat(32);
        let text = with(
            "serial = \"/dev/ttyUSB0\"",
            &format!(
                "serial = \"/dev/ttyUSB0\"\nrx_buffer_bytes = 1024\nm115_sha256 = \"{m115}\"\nm503_sha256 = \"{m503}\""
            ),
        );
        let cfg = Config::parse(&text).expect("valid");
        assert_eq!(cfg.printer.rx_buffer_bytes, 1024);
        assert_eq!(cfg.printer.m115_sha256, Some([0xab; 32]));
        assert_eq!(cfg.printer.m503_sha256, Some([0x0f; 32]));
    }

    #[test]
    fn rejects_receive_buffers_outside_the_bounds() {
        for value in [0, 31, 4097, 1 << 20] {
            let text = with(
                "serial = \"/dev/ttyUSB0\"",
                &format!("serial = \"/dev/ttyUSB0\"\nrx_buffer_bytes = {value}"),
            );
            assert_eq!(
                Config::parse(&text),
                Err(ConfigError::BadRxBuffer { value }),
                "{value}"
            );
        }
        let negative = with(
            "serial = \"/dev/ttyUSB0\"",
            "serial = \"/dev/ttyUSB0\"\nrx_buffer_bytes = -1",
        );
        assert!(matches!(
            Config::parse(&negative),
            Err(ConfigError::Syntax { .. })
        ));
    }

    #[test]
    fn rejects_baseline_digests_that_are_not_sha256_hex() {
        for (key, value) in [
            ("m115_sha256", "abc".to_owned()),
            ("m115_sha256", "g".repeat(64)),
            ("m503_sha256", "a".repeat(65)),
            ("m503_sha256", String::new()),
        ] {
            let text = with(
                "serial = \"/dev/ttyUSB0\"",
                &format!("serial = \"/dev/ttyUSB0\"\n{key} = \"{value}\""),
            );
            assert!(
                matches!(
                    Config::parse(&text),
                    Err(ConfigError::BadDigest { field, .. }) if field.ends_with(key)
                ),
                "{key} = {value:?}"
            );
        }
    }

    #[test]
    fn rejects_oversized_files_before_parsing() {
        let text = format!("{GOOD}#{}", "x".repeat(MAX_CONFIG_BYTES));
        assert_eq!(
            Config::parse(&text),
            Err(ConfigError::TooLarge { len: text.len() })
        );
    }
}

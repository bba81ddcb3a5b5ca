//! The broker's configuration: mosquitto with TLS 1.3 client certificates and per-gateway ACLs.
//!
//! Writes `mosquitto.conf` and `acl` for one loopback or LAN listener:
//!
//! - `require_certificate true`, `use_identity_as_username true`, `use_username_as_clientid true`:
//!   a client is its certificate's CN, and no client can take over another's session;
//! - `tls_version tlsv1.3`; `allow_anonymous false`; `set_tcp_nodelay true`;
//! - ACL: `pattern write spoke/%u/up/#` and `pattern read spoke/%u/down/#` for gateways, and for
//!   the hub client (`hub.operator`) read of every `up/` and write of every `down/` topic and of the
//!   retained `fleet/down/#` metadata; the one-shot publisher (`hub.publisher`) writes `down/`
//!   and `fleet/down/` and reads only `up/attest` (the answers to its attestation challenges);
//! - persistence on, autosaved every second. **It is not relied upon**: mosquitto's persistence is
//!   a periodic snapshot and a killed broker loses messages it acknowledged, so delivery rests on
//!   the gateway's ledger and the hub's signed receipts, not on the broker.
//!
//! Owns the text of the files only; the tests and the demo start the broker with them.

use std::fmt::Write as _;
use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Result;
use dosegate_core::fleet::MAX_JOB_MESSAGE_BYTES;

use crate::hub::write_atomic;
use crate::pki::{HUB_CLIENT_CN, HUB_PUBLISHER_CN, Pki};

/// Where and how the broker listens.
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Address to bind, e.g. `127.0.0.1`.
    pub bind: String,
    /// TCP port, e.g. 8883.
    pub port: u16,
    /// Directory for the configuration, persistence and log.
    pub dir: PathBuf,
    /// When mosquitto starts as root, the user it drops to (`root` keeps root, for tests in
    /// throwaway containers); `None` leaves mosquitto's default (`mosquitto`).
    pub user: Option<String>,
}

/// The ACL file's text.
pub fn acl() -> String {
    format!(
        "# DoseGate broker ACL: a gateway is its certificate CN (= MQTT username).\n\
         user {HUB_CLIENT_CN}\n\
         topic read spoke/+/up/#\n\
         topic write spoke/+/down/#\n\
         topic readwrite fleet/down/#\n\
         \n\
         user {HUB_PUBLISHER_CN}\n\
         topic write spoke/+/down/#\n\
         topic read spoke/+/up/attest\n\
         topic write fleet/down/#\n\
         \n\
         pattern write spoke/%u/up/#\n\
         pattern read spoke/%u/down/#\n\
         pattern read fleet/down/#\n"
    )
}

/// The `mosquitto.conf` text for `pki` and `options`.
pub fn config(pki: &Pki, options: &BrokerOptions) -> String {
    let files = pki.broker_files();
    let mut out = String::from("# DoseGate broker, written by dosegate-hub broker-config.\n");
    let dir = options.dir.display();
    if let Some(user) = &options.user {
        let _ = writeln!(out, "user {user}");
    }
    let _ = write!(
        out,
        "per_listener_settings false\n\
         allow_anonymous false\n\
         persistence true\n\
         persistence_location {dir}/\n\
         autosave_interval 1\n\
         max_queued_messages 10000\n\
         max_packet_size {max}\n\
         log_dest file {dir}/mosquitto.log\n\
         acl_file {dir}/acl\n\
         \n\
         listener {port} {bind}\n\
         cafile {ca}\n\
         certfile {cert}\n\
         keyfile {key}\n\
         tls_version tlsv1.3\n\
         require_certificate true\n\
         use_identity_as_username true\n\
         use_username_as_clientid true\n\
         set_tcp_nodelay true\n",
        max = MAX_JOB_MESSAGE_BYTES + 64 * 1024,
        port = options.port,
        bind = options.bind,
        ca = pki.ca_cert().display(),
        cert = files.cert.display(),
        key = files.key.display(),
    );
    out
}

/// Writes `mosquitto.conf` and `acl` into `options.dir`; returns the configuration's path.
pub fn write(pki: &Pki, options: &BrokerOptions) -> Result<PathBuf> {
    fs::create_dir_all(&options.dir)?;
    write_atomic(&options.dir.join("acl"), acl().as_bytes(), false)?;
    let path = options.dir.join("mosquitto.conf");
    write_atomic(&path, config(pki, options).as_bytes(), false)?;
    Ok(path)
}

/// The path of the configuration inside a broker directory.
pub fn config_path(dir: &Path) -> PathBuf {
    dir.join("mosquitto.conf")
}

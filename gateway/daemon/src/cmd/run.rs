//! `dosegate run`: the gateway's long-running mode, started by `dosegate.service`.
//!
//! This first slice owns the service lifecycle: read and validate the configuration once, log
//! the start (with a digest of the configuration, never its contents), warn when `[insecure]` is
//! present, check the state directory, tell systemd it is ready, and run until SIGTERM or SIGINT,
//! then exit cleanly. It does not yet talk to the hub, the printer or the TPM: the fleet link and
//! the job lifecycle extend it in later issues. It only notes whether the devices named in the
//! configuration exist, so an operator can read it in the journal.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use dosegate_core::config::{Config, ConfigError, MAX_CONFIG_BYTES};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::notify::{self, NotifyError, State};

const AFTER_HELP: &str = "\
Examples:
  dosegate run --config /etc/dosegate/gateway.toml
  dosegate run --config gateway/examples/gateway.toml --json
  dosegate run --config gateway.toml --check      # validate and exit

Under systemd (Type=notify) it reports READY=1 once the configuration is valid, and STOPPING=1
on SIGTERM. Logs go to stderr (the journal): text, or JSON lines with --json.

Exit codes (error codes in brackets, stable):
  0  stopped cleanly by SIGTERM/SIGINT, or --check passed
  2  bad command line
  3  configuration unreadable [config-unreadable] or invalid [config-invalid]
  4  state directory missing or not a directory [state-dir]
  5  systemd notification failed [notify]
  6  signal handling or runtime could not start [runtime]";

/// Run the gateway until stopped (the mode `dosegate.service` starts).
#[derive(Debug, clap::Args)]
#[command(
    long_about = "Run the gateway until SIGTERM. Loads and validates the configuration once \
                  (TOML, unknown keys refused), logs the start, warns on every start while an \
                  [insecure] table is present, notifies systemd readiness, and exits 0 when \
                  stopped.",
    after_help = AFTER_HELP
)]
pub struct Args {
    /// The configuration file (TOML; see gateway/examples/gateway.toml).
    #[arg(long, value_name = "FILE")]
    config: PathBuf,
    /// Log JSON lines instead of text.
    #[arg(long)]
    json: bool,
    /// Validate the configuration and the state directory, then exit.
    #[arg(long)]
    check: bool,
}

/// Why `run` stopped with an error.
#[derive(Debug, thiserror::Error)]
enum RunError {
    #[error("cannot read configuration {path:?}")]
    ConfigUnreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("configuration {path:?} refused")]
    ConfigInvalid {
        path: PathBuf,
        #[source]
        source: ConfigError,
    },
    #[error("state directory {path:?} is missing or not a directory")]
    StateDir { path: PathBuf },
    #[error(transparent)]
    Notify(#[from] NotifyError),
    #[error("cannot start the runtime or install signal handlers")]
    Runtime(#[source] std::io::Error),
}

impl RunError {
    fn code(&self) -> &'static str {
        match self {
            Self::ConfigUnreadable { .. } => "config-unreadable",
            Self::ConfigInvalid { .. } => "config-invalid",
            Self::StateDir { .. } => "state-dir",
            Self::Notify(_) => "notify",
            Self::Runtime(_) => "runtime",
        }
    }

    fn exit_code(&self) -> u8 {
        match self {
            Self::ConfigUnreadable { .. } | Self::ConfigInvalid { .. } => 3,
            Self::StateDir { .. } => 4,
            Self::Notify(_) => 5,
            Self::Runtime(_) => 6,
        }
    }
}

/// Entry point from `main`. Errors are logged here with their stable code and mapped to the exit
/// codes in `--help`, so this never returns `Err`.
pub fn run(args: &Args) -> anyhow::Result<ExitCode> {
    install_logging(args.json);
    Ok(match start(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            let chain = error_chain(&err);
            tracing::error!(code = err.code(), error = %chain, "dosegate run failed");
            ExitCode::from(err.exit_code())
        }
    })
}

fn install_logging(json: bool) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    if json {
        builder.json().init();
    } else {
        // The journal stamps each line itself.
        builder.without_time().init();
    }
}

fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut cause = err.source();
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

fn start(args: &Args) -> Result<(), RunError> {
    let (config, digest) = load(&args.config)?;
    info!(
        gateway_id = config.gateway_id.as_str(),
        version = env!("CARGO_PKG_VERSION"),
        config = %args.config.display(),
        config_sha256 = %digest,
        "dosegate starting"
    );
    if config.insecure.is_some() {
        warn!(
            "INSECURE: the configuration has an [insecure] table; this gateway must not release doses"
        );
    }
    if !config.paths.state_dir.is_dir() {
        return Err(RunError::StateDir {
            path: config.paths.state_dir.clone(),
        });
    }
    note_device("printer serial", &config.printer.serial);
    note_device("tpm", &config.tpm.device);
    if args.check {
        info!("configuration valid");
        return Ok(());
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(RunError::Runtime)?;
    runtime.block_on(serve())
}

async fn serve() -> Result<(), RunError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(RunError::Runtime)?;
    let mut int = signal(SignalKind::interrupt()).map_err(RunError::Runtime)?;
    if notify::notify(std::env::var_os("NOTIFY_SOCKET"), State::Ready)? {
        info!("systemd notified: ready");
    }
    info!("dosegate running");
    let which = tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    };
    info!(signal = which, "dosegate stopping");
    notify::notify(std::env::var_os("NOTIFY_SOCKET"), State::Stopping)?;
    info!("dosegate stopped");
    Ok(())
}

/// Reads at most `MAX_CONFIG_BYTES + 1` bytes, so an oversized file is refused without reading
/// it whole, and returns the parsed configuration with the SHA-256 of its bytes.
fn load(path: &Path) -> Result<(Config, String), RunError> {
    let unreadable = |source| RunError::ConfigUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(unreadable)?;
    let mut bytes = Vec::new();
    file.take(MAX_CONFIG_BYTES as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(unreadable)?;
    let invalid = |source| RunError::ConfigInvalid {
        path: path.to_path_buf(),
        source,
    };
    if bytes.len() > MAX_CONFIG_BYTES {
        return Err(invalid(ConfigError::TooLarge { len: bytes.len() }));
    }
    let text = String::from_utf8(bytes).map_err(|e| {
        invalid(ConfigError::Syntax {
            reason: format!("not UTF-8: {}", e.utf8_error()),
        })
    })?;
    let config = Config::parse(&text).map_err(invalid)?;
    Ok((config, hex::encode(Sha256::digest(text.as_bytes()))))
}

fn note_device(what: &str, path: &Path) {
    if path.exists() {
        info!(device = %path.display(), "{what} present");
    } else {
        warn!(device = %path.display(), "{what} absent");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
        let path = std::env::temp_dir().join(format!("dosegate-run-{name}-{}", std::process::id()));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    #[test]
    fn loads_the_example_and_digests_its_bytes() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/gateway.toml");
        let (config, digest) = load(&path).expect("valid");
        let bytes = std::fs::read(&path).expect("read");
        assert_eq!(digest, hex::encode(Sha256::digest(&bytes)));
        assert!(!config.gateway_id.as_str().is_empty());
    }

    #[test]
    fn refuses_an_oversized_file_with_its_size() {
        let path = temp_file("big", &vec![b'#'; MAX_CONFIG_BYTES + 10]);
        let err = load(&path).unwrap_err();
        assert!(
            matches!(&err, RunError::ConfigInvalid { source: ConfigError::TooLarge { len }, .. } if *len == MAX_CONFIG_BYTES + 1),
            "{err:?}"
        );
        assert_eq!(err.exit_code(), 3);
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn refuses_non_utf8() {
        let path = temp_file("utf8", b"gateway_id = \"\xff\"");
        let err = load(&path).unwrap_err();
        assert_eq!(err.code(), "config-invalid");
        std::fs::remove_file(path).ok();
    }

    #[test]
    fn reports_a_missing_file_as_unreadable() {
        let err = load(Path::new("/nonexistent/dosegate.toml")).unwrap_err();
        assert_eq!(err.code(), "config-unreadable");
        assert!(
            error_chain(&err).contains("No such file"),
            "{}",
            error_chain(&err)
        );
    }
}

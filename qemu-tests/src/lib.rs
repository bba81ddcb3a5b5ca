//! The QEMU harness of DoseGate's image tests: it boots the appliance image built by `make image`
//! the way a box boots it (OVMF with secure boot and our keys enrolled, a software TPM, the disk,
//! the printer on a second serial port) and reads the serial console for markers, with a hard
//! timeout on every wait.
//!
//! This crate owns the harness only: locating the build's artifacts ([`artifacts`]), editing a
//! copy of the disk the way an attacker or an update would ([`disk`]), running the machine
//! ([`machine`]) and reading the image's test report ([`report`]). The scenarios live in
//! `tests/`. It does not build the image, and never writes to the build's own disk image: every
//! scenario works on a copy, booted in QEMU's snapshot mode.

pub mod artifacts;
pub mod disk;
pub mod machine;
pub mod report;

use std::path::PathBuf;
use std::time::Duration;

/// What can go wrong in the harness (not in the image: the tests assert on the image).
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    /// A tool the harness runs is not installed.
    #[error("{tool} is not installed (scripts/setup-deps.sh installs it)")]
    MissingTool {
        /// The program.
        tool: &'static str,
    },
    /// An artifact of `make image` is missing.
    #[error("image artifact {path:?} missing (run `make image`)")]
    MissingArtifact {
        /// Where it was expected.
        path: PathBuf,
    },
    /// An artifact is there but not as expected.
    #[error("image artifact {path:?} is malformed: {reason}")]
    BadArtifact {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A host tool failed.
    #[error("{tool} failed with {status}: {stderr}")]
    ToolFailed {
        /// The program.
        tool: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it printed on stderr.
        stderr: String,
    },
    /// The expected console output did not come in time.
    #[error("no {what} on the console within {after:?}; last lines:\n{tail}")]
    Timeout {
        /// What was awaited.
        what: String,
        /// The timeout.
        after: Duration,
        /// The console's last lines.
        tail: String,
    },
    /// QEMU exited while a marker was awaited.
    #[error("QEMU exited while waiting for {what}; last lines:\n{tail}")]
    Exited {
        /// What was awaited.
        what: String,
        /// The console's last lines.
        tail: String,
    },
    /// I/O on the host.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl HarnessError {
    pub(crate) fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> Self {
        let context = context.into();
        move |source| Self::Io { context, source }
    }
}

/// Whether a missing component must fail the test (`DOSEGATE_REQUIRE_REAL` set, as in
/// `make test`) rather than skip it.
pub fn real_required() -> bool {
    std::env::var_os("DOSEGATE_REQUIRE_REAL").is_some_and(|v| !v.is_empty() && v != "0")
}

/// Checks the host tools the harness needs are installed.
pub fn check_tools() -> Result<(), HarnessError> {
    for tool in ["qemu-system-x86_64", "swtpm", "mcopy", "sfdisk", "cp"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|paths| std::env::split_paths(&paths).any(|dir| dir.join(tool).is_file()));
        if !found {
            return Err(HarnessError::MissingTool { tool });
        }
    }
    Ok(())
}

/// Base64 (standard alphabet, padded), for binary SMBIOS credentials.
pub fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk.first().copied().unwrap_or(0),
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_rfc4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }
}

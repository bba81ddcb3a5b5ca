//! The fleet outbox as the daemon keeps it across restarts: the last verified hub receipt lives
//! beside the ledger (`<ledger>.receipt.cose`) and says which records are delivered; every later
//! record goes back into the [`Outbox`] and is published again until a receipt covers it.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Result;
use dosegate_core::fleet::metadata::RoleKeysInForce;
use dosegate_core::fleet::{GatewayId, Outbox, OutboxConfig, receipt};
use sha2::{Digest as _, Sha256};

/// Where the last receipt for the ledger in `ledger_dir` is kept.
pub fn receipt_path(ledger_dir: &Path) -> PathBuf {
    ledger_dir.with_extension("receipt.cose")
}

/// Keeps a receipt durably (temporary file, fsync, rename).
pub fn write_receipt(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    Ok(())
}

/// The first seq not yet receipted, from the kept receipt (0 when none, or when it does not
/// verify against the keys in force or does not match the ledger: then everything is sent again
/// and the hub de-duplicates — re-sending is always safe, starting without a link is not).
pub fn delivered_up_to(
    path: &Path,
    keys: RoleKeysInForce<'_>,
    gw: &GatewayId,
    records: &[Vec<u8>],
) -> u64 {
    let Ok(bytes) = std::fs::read(path) else {
        return 0;
    };
    let r = match receipt::verify_in_force(&bytes, keys, gw) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(
                error = %e,
                path = %path.display(),
                "kept receipt does not verify; re-sending everything"
            );
            return 0;
        }
    };
    let index = usize::try_from(r.seq()).unwrap_or(usize::MAX);
    match records.get(index) {
        Some(rec) if <[u8; 32]>::from(Sha256::digest(rec)) == *r.hash() => r.seq() + 1,
        _ => {
            tracing::warn!(
                seq = r.seq(),
                "kept receipt does not match the ledger; re-sending everything"
            );
            0
        }
    }
}

/// An outbox holding every record of `records` (the whole ledger, in seq order) that the kept
/// receipt does not cover.
pub fn resume(
    ledger_dir: &Path,
    keys: RoleKeysInForce<'_>,
    gw: &GatewayId,
    records: &[Vec<u8>],
    config: OutboxConfig,
    now_ms: u64,
) -> Result<Outbox> {
    let first = delivered_up_to(&receipt_path(ledger_dir), keys, gw, records);
    let mut outbox = Outbox::new(config, first);
    for (seq, bytes) in (0u64..).zip(records).skip(usize::try_from(first)?) {
        outbox.push(seq, Sha256::digest(bytes).into(), bytes.clone(), now_ms)?;
    }
    Ok(outbox)
}

//! Reading the identity (id, version) of a policy file the gateway holds.

use anyhow::{Context as _, Result};

/// The `id` and `version` declared by a policy TOML.
pub fn identity(bytes: &[u8]) -> Result<(String, u32)> {
    let text = std::str::from_utf8(bytes).context("policy is not UTF-8")?;
    let table: toml::Table = toml::from_str(text).context("policy is not valid TOML")?;
    let id = table
        .get("id")
        .and_then(toml::Value::as_str)
        .context("policy has no `id`")?
        .to_owned();
    let version = table
        .get("version")
        .and_then(toml::Value::as_integer)
        .and_then(|v| u32::try_from(v).ok())
        .context("policy has no valid `version`")?;
    Ok((id, version))
}

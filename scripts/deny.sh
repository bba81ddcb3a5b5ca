#!/usr/bin/env bash
# Licences, bans (including duplicate versions) and sources of every dependency, by cargo-deny.
# The advisory database lives on GitHub, which this project's machines cannot reach, so
# `advisories` is checked only when the database can be fetched (DENY_ADVISORIES=1).
set -euo pipefail
cd "$(dirname "$0")/.."
if ! command -v cargo-deny >/dev/null 2>&1; then
    cargo install --locked cargo-deny --version 0.20.2
fi
checks=(bans licenses sources)
[ "${DENY_ADVISORIES:-0}" = 1 ] && checks+=(advisories)
cargo deny --all-features check "${checks[@]}"

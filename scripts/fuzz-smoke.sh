#!/usr/bin/env bash
# Runs every cargo-fuzz target for a short while (FUZZ_SECONDS, default 20 each).
# cargo-fuzz needs nightly flags; the machine has one stable toolchain, so RUSTC_BOOTSTRAP=1 lets
# stable accept them (for the fuzz build only).
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-20}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz --version 0.13.1
fi
cd gateway/fuzz
targets=$(cargo fuzz list)
[ -n "$targets" ] || { echo "fuzz: no targets"; exit 1; }
for t in $targets; do
    echo "fuzz: $t for ${secs}s"
    mkdir -p "corpus/$t"
    [ -d "seeds/$t" ] && cp -n seeds/"$t"/* "corpus/$t/" 2>/dev/null || true
    RUSTC_BOOTSTRAP=1 cargo fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -rss_limit_mb=1024 2>&1 | tail -n 3
done

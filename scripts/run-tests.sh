#!/usr/bin/env bash
# Runs the workspace's tests with every real-component feature on (swtpm, mosquitto, PrusaSlicer,
# OctoPrint); scripts/setup-deps.sh has installed those components. The QEMU image tests run in
# `make qemu-test`, after `make image`. DOSEGATE_REQUIRE_REAL=1 turns
# "component missing, skipped" into a failure, so CI never passes by skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
export DOSEGATE_REQUIRE_REAL=1
if command -v cargo-nextest >/dev/null 2>&1; then
    cargo nextest run --workspace --exclude dosegate-qemu-tests --all-features --locked --release --no-fail-fast
else
    cargo test --workspace --exclude dosegate-qemu-tests --all-features --locked --release --no-fail-fast
fi

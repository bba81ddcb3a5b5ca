#!/usr/bin/env bash
# Runs every area's benchmark script (scripts/bench-*.sh); see BENCHMARKS.md for the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in scripts/bench-*.sh; do
    echo "### $b"
    bash "$b"
done

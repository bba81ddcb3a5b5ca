#!/usr/bin/env bash
# Runs every area's benchmark script (scripts/bench-*.sh); results are recorded in BENCHMARKS.md.
set -euo pipefail
cd "$(dirname "$0")/.."
for b in scripts/bench-*.sh; do
    [ -e "$b" ] || continue
    echo "bench: $b"
    bash "$b"
done

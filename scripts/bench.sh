#!/usr/bin/env bash
# Runs every area's benchmark script (scripts/bench-*.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
for b in scripts/bench-*.sh; do
    [ -e "$b" ] || continue
    echo "== $b"
    bash "$b"
done

#!/usr/bin/env bash
# Trains every committed PAT model from its specification (models/specs/*.toml) and the shared
# calibration data (../shared/data/pat), writing models/<id>.{cbor,json,md}. Deterministic: the
# same data and code give byte-identical model files (a test checks this).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${PAT_DATA_DIR:-../shared/data/pat}"
[ -d "$data" ] || { echo "train-models: no calibration data in $data" >&2; exit 2; }
cargo build --locked --release -p dosegate-provisioning --bin dosegate-hub
for spec in models/specs/*.toml; do
    target/release/dosegate-hub model train "$spec" --data-dir "$data" --out-dir models
done

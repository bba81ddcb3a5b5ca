#!/usr/bin/env bash
# PAT inference latency per spectrum (preprocessing + prediction + T² + Q), the gateway's Rust
# code and scikit-learn side by side in one run, on the committed models.
# scikit-learn comes from a development venv under build/ (created on first use from PyPI).
# Writes build/bench-pat.txt; BENCHMARKS.md records the figures.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p build
venv=build/pat-venv
if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c 'import sklearn, scipy' 2>/dev/null; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install -q scikit-learn numpy scipy
fi
out=build/bench-pat.txt
{
    echo "# $(date -u +%Y-%m-%dT%H:%MZ) $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //') ($(nproc) cores)"
    cargo build --locked --release -q -p dosegate-provisioning --bin dosegate-hub
    for spec in models/specs/*.toml; do
        target/release/dosegate-hub model train "$spec" --out-dir build/bench-models --json |
            python3 -c "import json,sys; s=json.load(sys.stdin); print('ACCURACY %s dosegate rmsecv=%.4f rmsecv_kfold=%.4f lv=%d' % (s['id'], s['rmsecv'], s['rmsecv_kfold'], s['lv']))"
    done
    cargo bench --locked -p dosegate-core --bench pat 2>/dev/null | grep '^BENCH'
    (cd models/tools && "../../$venv/bin/python" bench_sklearn.py)
} | tee "$out"

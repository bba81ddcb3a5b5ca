#!/usr/bin/env bash
# Ledger benchmark: appends per second (fsync + signature, TPM on swtpm vs. software key) and
# verification throughput on one core (vs. raw ECDSA P-256 verification by `openssl speed`).
# Figures are recorded in BENCHMARKS.md. Needs swtpm (scripts/deps/30-tpm.apt) and openssl.
#   JOBS=50 VERIFY_JOBS=200 scripts/bench-ledger.sh
set -euo pipefail
cd "$(dirname "$0")/.."
jobs="${JOBS:-50}"
verify_jobs="${VERIFY_JOBS:-200}"
cargo build --release --locked -p dosegate >/dev/null
bin="$PWD/target/release/dosegate"
work=$(mktemp -d)
swtpm_pid=""
cleanup() {
    [ -n "$swtpm_pid" ] && kill "$swtpm_pid" 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

port=$(python3 -c 'import socket
for _ in range(100):
    s = socket.socket(); s.bind(("127.0.0.1", 0)); p = s.getsockname()[1]; s.close()
    t = socket.socket()
    try:
        t.bind(("127.0.0.1", p + 1)); t.close(); print(p); break
    except OSError:
        t.close()')
mkdir -p "$work/tpmstate"
swtpm socket --tpm2 --server "type=tcp,port=$port,bindaddr=127.0.0.1" \
    --ctrl "type=tcp,port=$((port + 1)),bindaddr=127.0.0.1" \
    --flags not-need-init,startup-clear --tpmstate "dir=$work/tpmstate" &
swtpm_pid=$!
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$port") 2>/dev/null && break; sleep 0.05; done

echo "== appends (fsync each record; a checkpoint with counter bump + quote after each job)"
"$bin" ledger exercise "$work/tpm" --gateway-id bench --tpm "swtpm:host=127.0.0.1,port=$port" \
    --event-log "$work/app-pcr.log" --jobs "$jobs" --stats 2>&1 >/dev/null | grep '^exercise' | sed 's/^/tpm (swtpm):  /'
"$bin" ledger exercise "$work/sw" --gateway-id bench --insecure-dev-key "$work/dev.key" \
    --jobs "$jobs" --stats 2>&1 >/dev/null | grep '^exercise' | sed 's/^/software key: /'

echo "== verification on one core"
"$bin" ledger exercise "$work/big" --gateway-id bench --insecure-dev-key "$work/dev.key" \
    --jobs "$verify_jobs" >/dev/null 2>&1
for dir in big tpm; do
    extra=()
    [ "$dir" = big ] && extra=(--allow-insecure)
    taskset -c 0 "$bin" ledger verify "$work/$dir" --json "${extra[@]}" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); r=d["records"]; t=d["verify_seconds"]; c=d["checkpoints"]; print("ledger verify (%s): %d records in %.3f s = %.0f records/s (%d checkpoints)" % (sys.argv[1], r, t, r / t, c))' "$dir"
done
taskset -c 0 openssl speed -seconds 3 ecdsap256 2>/dev/null | awk '/256 bits ecdsa/ {print "peer: openssl ecdsap256 verify on one core: " $NF " verifies/s"}'

#!/usr/bin/env bash
# Fleet link benchmark, loopback only, bounded in size and time (about a minute on 2 cores):
#   1. one gateway: `dosegate fleet exercise` records JOBS synthetic jobs (6 events + checkpoints
#      each) through the real ledger (sign, fsync) and delivers them over MQTT v5 / TLS 1.3 to
#      `dosegate-hub fleet serve`, which stores each record (fsync) and signs a receipt;
#      figures: records/s end to end, last record → receipt latency, gateway peak RSS;
#   2. the peer, same broker, same run: mosquitto_pub over the same mTLS listener, QoS 1, the same
#      number of 1 KiB messages, acknowledged by the broker only (no ledger, no receipt);
#   3. GATEWAYS gateways at once on one mosquitto, each recording JOBS_EACH jobs.
# Prints one JSON line per figure. Needs scripts/deps/50-fleet.apt.
set -euo pipefail
cd "$(dirname "$0")/.."
JOBS="${JOBS:-200}"
GATEWAYS="${GATEWAYS:-20}"
JOBS_EACH="${JOBS_EACH:-10}"
MOSQUITTO="$(command -v mosquitto || echo /usr/sbin/mosquitto)"

cargo build --release --locked -q -p dosegate -p dosegate-provisioning --bins
gw=target/release/dosegate
hub=target/release/dosegate-hub
T="$(mktemp -d)"
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$T"; }
trap cleanup EXIT

"$hub" init --dir "$T/hub" >/dev/null
"$hub" fleet pki-init --hub "$T/hub" >/dev/null
port="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$hub" fleet broker-config --hub "$T/hub" --dir "$T/broker" --port "$port" --user "$(id -un)" >/dev/null
"$MOSQUITTO" -c "$T/broker/mosquitto.conf" >/dev/null 2>&1 & pids+=($!)
for _ in $(seq 100); do (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break; sleep 0.05; done
"$hub" fleet serve --hub "$T/hub" --broker "localhost:$port" --json --allow-insecure > "$T/hub.log" & pids+=($!)

exercise() { # gateway-id jobs
    mkdir -p "$T/gw/$1"
    "$hub" fleet enroll --hub "$T/hub" --gateway-id "$1" >/dev/null
    "$gw" fleet exercise --json --gateway-id "$1" --jobs "$2" \
        --ledger "$T/gw/$1/ledger" --insecure-dev-key "$T/gw/$1/dev.key" \
        --trust-root "$T/hub/trust-root.cbor" --broker "localhost:$port" --ca "$T/hub/pki/ca.pem" \
        --cert "$T/hub/pki/gateways/$1.pem" --key "$T/hub/pki/gateways/$1.key" --wait 120s 2>/dev/null
}
mkdir -p "$T/gw"
model="$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')"
echo "{\"machine\":\"$(nproc) cores, $model\",\"date\":\"$(date -u +%F)\"}"

# 1. One gateway, end to end with receipts.
one="$(exercise bench-01 "$JOBS")"
echo "{\"bench\":\"one-gateway\",\"result\":$one}"
records="$(python3 -c 'import json,sys; print(json.loads(sys.argv[1])["recorded_now"])' "$one")"

# 2. Peer: the broker alone, same listener, same count of 1 KiB QoS 1 messages.
"$hub" fleet enroll --hub "$T/hub" --gateway-id peer-01 >/dev/null
python3 -c "import sys; [print('x'*1024) for _ in range(int(sys.argv[1]))]" "$records" > "$T/msgs"
start="$(date +%s.%N)"
mosquitto_pub -h localhost -p "$port" --cafile "$T/hub/pki/ca.pem" \
    --cert "$T/hub/pki/gateways/peer-01.pem" --key "$T/hub/pki/gateways/peer-01.key" \
    -i peer-01 -V 5 -q 1 -t spoke/peer-01/up/bench -l < "$T/msgs"
end="$(date +%s.%N)"
python3 -c "import sys; n=int(sys.argv[1]); s=float(sys.argv[3])-float(sys.argv[2]); print('{\"bench\":\"peer-mosquitto_pub\",\"messages\":%d,\"seconds\":%.3f,\"messages_per_second\":%.1f}' % (n, s, n/s))" "$records" "$start" "$end"

# 3. N gateways at once.
start="$(date +%s.%N)"
for i in $(seq -w 1 "$GATEWAYS"); do exercise "fleet-$i" "$JOBS_EACH" > "$T/fleet-$i.json" & done
wait_ok=0
for job in $(jobs -p); do
    case " ${pids[*]} " in *" $job "*) continue ;; esac
    wait "$job" || wait_ok=1
done
end="$(date +%s.%N)"
python3 - "$T" "$GATEWAYS" "$start" "$end" "$wait_ok" <<'PY'
import json, glob, sys
t, n, start, end, failed = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4]), sys.argv[5]
runs = [json.load(open(f)) for f in sorted(glob.glob(t + "/fleet-*.json"))]
recs = sum(r["recorded_now"] for r in runs)
ok = sum(1 for r in runs if r["backlog"] == 0)
print(json.dumps({"bench": "n-gateways", "gateways": n, "all_receipted": ok, "records": recs,
                  "seconds": round(end - start, 3), "records_per_second": round(recs / (end - start), 1),
                  "max_peak_rss_kib": max(r["peak_rss_kib"] or 0 for r in runs), "failed": failed != "0"}))
PY

#!/usr/bin/env bash
# make demo: one whole job cycle on this machine, with throwaway keys and state under build/demo/.
#
#   hub      dosegate-hub: trust root, fleet PKI, broker configuration, signs a job from real
#            PrusaSlicer output, publishes it, stores the gateway's sealed events and receipts them
#   broker   mosquitto: TLS 1.3, client certificates, per-gateway ACL
#   gateway  dosegate run: swtpm as its TPM, the simulated Marlin printer on a pty, the simulated
#            spectrometer on a drop folder serving real NIR tablet spectra from ../shared/data/pat
#
# The gateway verifies the job, prints it, measures the unit, decides the release with the PLS
# model, and the hub receipts the sealed release record. Then the demo shows the gateway refusing
# the same job replayed and a tampered copy, prints a summary, and stops everything it started.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bin=$root/target/release
demo=${DEMO_DIR:-$root/build/demo}
gw=spoke-01
data=${PAT_DATA:-$root/../shared/data/pat}
gcode=gateway/core/tests/data/gcode/slicer/hctz-cylinder-7.2x2.6.gcode   # real PrusaSlicer output
policy=policies/fdm-hctz-printlet.toml
rx=provisioning/examples/prescription-demo.toml
timeout_s=${DEMO_TIMEOUT_S:-180}
# DEMO_KILL_MID_JOB=1: SIGKILL the gateway while it prints and restart it (the crash test uses it).
# DEMO_ABORT_MID_JOB=1: the hub aborts the job while it prints.
# DEMO_FLEET=1: the hub's signed fleet metadata at work. Before the job, the hub publishes version 2
# of the policy; the gateway applies and measures it, and the job is signed against it. At the end,
# the hub revokes a job id and the gateway refuses that job; then the revocation list expires and
# the gateway refuses new jobs until a current one arrives.
kill_mid_job=${DEMO_KILL_MID_JOB:-}
abort_mid_job=${DEMO_ABORT_MID_JOB:-}
fleet_updates=${DEMO_FLEET:-}
move_ms=0
[ -z "$kill_mid_job$abort_mid_job" ] || move_ms=5

rm -rf "$demo" && mkdir -p "$demo"/{state,spectra}
pids=()
cleanup() {
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
}
trap cleanup EXIT
say() { printf '\n== %s\n' "$*"; }
die() { echo "demo: $*" >&2; for f in gateway.log hub.log; do [ -f "$demo/$f" ] && { echo "--- $f (tail)"; tail -n 30 "$demo/$f"; }; done >&2; exit 1; }
# free_ports N: a port P with P..P+N-1 free, below the kernel's ephemeral range (20000-31999), so
# that no outgoing connection of another program on this machine can take it in the meantime.
free_ports() {
    python3 - "$1" <<'PY'
import random, socket, sys
n = int(sys.argv[1])
for _ in range(200):
    p = random.randrange(20000, 32000 - n)
    socks = []
    try:
        for q in range(p, p + n):
            s = socket.socket(); socks.append(s); s.bind(("127.0.0.1", q))
    except OSError:
        continue
    finally:
        for s in socks: s.close()
    print(p); sys.exit(0)
sys.exit("no free port")
PY
}
# listening PID PORT: the process is alive and accepts connections on PORT (fails fast if it died).
listening() {
    kill -0 "$1" 2>/dev/null || return 2
    bash -c "exec 3<>/dev/tcp/127.0.0.1/$2" 2>/dev/null
}
# start_listener WHAT START_FN PORTS: runs START_FN PORT (which starts one background process and
# leaves its pid in $started) on fresh ports until it listens; another program may still bind a
# port between the check and the start, so a start that dies is retried on other ports.
start_listener() {
    local what=$1 start=$2 n=$3 port attempt end rc
    for attempt in 1 2 3 4 5; do
        port=$(free_ports "$n")
        "$start" "$port"
        end=$((SECONDS + 10))
        while :; do
            listening "$started" "$port" && { pids+=("$started"); listened=$port; return 0; }
            rc=$?
            [ $rc -ne 2 ] && [ $SECONDS -lt $end ] || break
            sleep 0.1
        done
        kill "$started" 2>/dev/null || true
        wait "$started" 2>/dev/null || true
        echo "demo: $what did not listen on port $port (attempt $attempt), trying another port" >&2
    done
    die "$what did not start (see its log in $demo)"
}
# wait_for SECONDS DESCRIPTION COMMAND...: polls COMMAND every 0.2 s.
wait_for() {
    local t=$1 what=$2; shift 2
    local end=$((SECONDS + t))
    until "$@" >/dev/null 2>&1; do
        [ $SECONDS -lt $end ] || die "timed out after ${t}s waiting for $what"
        sleep 0.2
    done
}
[ -f "$data/dyrby2002_nir_cal.csv" ] || die "PAT data not found at $data (set PAT_DATA)"

say "gateway TPM: swtpm; the gateway's enrollment request (TPM-held attestation and mTLS keys)"
mkdir -p "$demo/tpm"
start_swtpm() {   # the TPM on port $1, its control channel on $1 + 1
    swtpm socket --tpm2 --server "type=tcp,port=$1,bindaddr=127.0.0.1" \
        --ctrl "type=tcp,port=$(($1 + 1)),bindaddr=127.0.0.1" \
        --flags not-need-init,startup-clear --tpmstate "dir=$demo/tpm" >>"$demo/swtpm.log" 2>&1 &
    started=$!
}
start_listener swtpm start_swtpm 2
tpm_port=$listened
"$bin/dosegate" tpm enroll-request --tpm "swtpm:host=127.0.0.1,port=$tpm_port" --gateway-id "$gw" \
    --out "$demo/$gw.enroll" >/dev/null

say "hub: trust root (jobs 2-of-2), fleet PKI, the gateway's certificate for its TPM key, broker configuration"
"$bin/dosegate-hub" init --dir "$demo/hub" --hub-id hub.demo --jobs-keys 2 --jobs-threshold 2 >/dev/null
"$bin/dosegate-hub" fleet pki-init --hub "$demo/hub" >/dev/null
"$bin/dosegate-hub" fleet enroll --hub "$demo/hub" --gateway-id "$gw" --request "$demo/$gw.enroll"
start_broker() {
    "$bin/dosegate-hub" fleet broker-config --hub "$demo/hub" --dir "$demo/broker" --port "$1" \
        --user "$(id -un)" >/dev/null
    mosquitto -c "$demo/broker/mosquitto.conf" >>"$demo/broker.log" 2>&1 &
    started=$!
}
start_listener mosquitto start_broker 1
broker_port=$listened
say "broker: mosquitto on 127.0.0.1:$broker_port (TLS 1.3, client certificates)"

say "gateway devices: printer simulator (pty), spectrometer simulator (drop folder)"
"$bin/dosegate-printer-sim" --link "$demo/printer" --latency-ms 1 --heat-rate 200 --move-time-ms "$move_ms" \
    --exec-log "$demo/printer-executed.gcode" >"$demo/printer.pty" 2>"$demo/printer.log" &
pids+=($!)
wait_for 10 "the printer pty" test -s "$demo/printer.pty"
printer_dev=$(head -n1 "$demo/printer.pty")
"$bin/dosegate-spectrometer-sim" --drop "$demo/spectra" --csv "$data/dyrby2002_nir_cal.csv" \
    --near 8.0 --within 0.1 2>"$demo/spectrometer.log" &
pids+=($!)
cat >"$demo/gateway.toml" <<EOF
# Written by scripts/demo.sh: the demo gateway. Its mTLS client key is the one in its (software)
# TPM; the software TPM itself is an insecure override, and the gateway warns about it.
gateway_id = "$gw"

[paths]
state_dir = "$demo/state"

[printer]
serial = "$printer_dev"

[tpm]
device = "/dev/tpmrm0"

[holdings]
trust_root = "$demo/hub/trust-root.cbor"
policies_dir = "$root/policies"
models_dir = "$root/models"

[fleet]
broker_host = "localhost"
broker_port = $broker_port
ca = "$demo/hub/pki/ca.pem"
cert = "$demo/hub/pki/gateways/$gw.pem"
keep_alive_s = 10
resend_after_s = 5

[spectrometer]
drop_dir = "$demo/spectra"
timeout_s = 60

[insecure]
tpm_tcti = "swtpm:host=127.0.0.1,port=$tpm_port"
EOF

say "hub: serving the fleet (stores events, sends receipts)"
# Each hub event is stamped with its arrival time (ms) for scripts/bench-run.sh.
stamp='import json, sys, time
for line in sys.stdin:
    e = json.loads(line); e["at_ms"] = int(time.time() * 1000); print(json.dumps(e), flush=True)'
"$bin/dosegate-hub" fleet serve --hub "$demo/hub" --broker "localhost:$broker_port" --json \
    2>"$demo/hub.log" > >(python3 -u -c "$stamp" >"$demo/hub-events.jsonl") &
pids+=($!)

say "gateway: dosegate run --config $demo/gateway.toml"
start_gateway() {
    "$bin/dosegate" run --config "$demo/gateway.toml" --json 2>>"$demo/gateway.log" &
    gateway_pid=$!
    pids+=($gateway_pid)
}
start_gateway
wait_for 30 "the gateway's birth message at the hub" grep -q '"birth"' "$demo/hub-events.jsonl"

# logged MESSAGE: how many times the gateway has logged MESSAGE; logged_more MESSAGE N: more than N.
logged() { grep -c "\"$1\"" "$demo/gateway.log" || true; }
logged_more() { [ "$(logged "$1")" -gt "$2" ]; }
if [ -n "$fleet_updates" ]; then
    say "hub: publish version 2 of the policy (signed by the policies role); jobs are signed against it"
    sed 's/^version = 1$/version = 2/' "$policy" >"$demo/policy-v2.toml"
    policy=$demo/policy-v2.toml
    # The prescription names the policy version it was written for.
    sed '/^\[policy\]/,/^\[/ s/^version = 1$/version = 2/' "$rx" >"$demo/prescription-v2.toml"
    rx=$demo/prescription-v2.toml
    before=$(logged "fleet metadata applied")
    "$bin/dosegate-hub" fleet publish-policy --hub "$demo/hub" --broker "localhost:$broker_port" \
        --policy "$policy"
    wait_for 30 "the policy at the gateway" logged_more "fleet metadata applied" "$before"
fi

say "hub: sign a job for $gw from the printlet's G-code and the prescription"
"$bin/dosegate-hub" sign-job --hub "$demo/hub" --gcode "$gcode" --prescription "$rx" \
    --policy "$policy" --gateway-id "$gw" --out "$demo/job.cose" --compress | tee "$demo/signed.txt"
job_id=$(awk '/^signed job/ {print $3; exit}' "$demo/signed.txt")
python3 -c 'import time; print(int(time.time() * 1000))' >"$demo/published_at_ms"
"$bin/dosegate-hub" fleet publish-job --hub "$demo/hub" --broker "localhost:$broker_port" \
    --gateway-id "$gw" --job "$demo/job.cose"

if [ -n "$kill_mid_job" ]; then
    wait_for 60 "printing to start" grep -q '"message":"printing"' "$demo/gateway.log"
    sleep 1
    say "crash: SIGKILL the gateway mid-print, then start it again"
    kill -KILL "$gateway_pid"
    wait "$gateway_pid" 2>/dev/null || true
    start_gateway
fi

if [ -n "$abort_mid_job" ]; then
    wait_for 60 "printing to start" grep -q '"message":"printing"' "$demo/gateway.log"
    sleep 1
    say "hub: abort $job_id while it prints"
    "$bin/dosegate-hub" fleet command --hub "$demo/hub" --broker "localhost:$broker_port" \
        --gateway-id "$gw" --abort "$job_id"
fi

say "gateway: verify → print → measure → release (waiting up to ${timeout_s}s)"
job_done() { grep '"job done"' "$demo/gateway.log" | tail -n1; }
wait_for "$timeout_s" "the job's final event" logged_more "job done" 0
receipted() {
    python3 - "$demo/hub-events.jsonl" "$1" <<'PY'
import json, sys
want = int(sys.argv[2])
seqs = [e["seq"] for e in map(json.loads, open(sys.argv[1])) if e.get("kind") == "receipted"]
sys.exit(0 if any(s >= want for s in seqs) else 1)
PY
}
# last_job_receipted: waits for the hub's receipt of the last finished job's final record.
last_job_receipted() {
    local seq
    seq=$(job_done | python3 -c 'import json,sys; print(json.load(sys.stdin)["fields"]["seq"])')
    wait_for 60 "the hub's receipt for ledger record $seq" receipted "$seq"
}
last_job_receipted

say "hub: attestation challenge (TPM quote over the measured software state)"
"$bin/dosegate-hub" fleet attest --hub "$demo/hub" --broker "localhost:$broker_port" \
    --gateway-id "$gw" --json >"$demo/attest.json" || die "attestation failed: $(cat "$demo/attest.json")"
python3 -c 'import json,sys; print(json.dumps(json.load(open(sys.argv[1])))[:300])' "$demo/attest.json"

say "attacker: the same job published again (replay), and a copy with one byte flipped"
"$bin/dosegate-hub" fleet publish-job --hub "$demo/hub" --broker "localhost:$broker_port" \
    --gateway-id "$gw" --job "$demo/job.cose" >/dev/null
python3 - "$demo/job.cose" "$demo/tampered.cose" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[len(data) // 2] ^= 0x01
open(sys.argv[2], "wb").write(data)
PY
"$bin/dosegate-hub" fleet publish-job --hub "$demo/hub" --broker "localhost:$broker_port" \
    --gateway-id "$gw" --job "$demo/tampered.cose" >/dev/null
wait_for 60 "both refusals" logged_more "job done" 2
last_job_receipted

if [ -n "$fleet_updates" ]; then
    sign_and_publish() {   # sign_and_publish OUT [--job-id ID]
        local out=$1; shift
        "$bin/dosegate-hub" sign-job --hub "$demo/hub" --gcode "$gcode" --prescription "$rx" \
            --policy "$policy" --gateway-id "$gw" --out "$out" --compress "$@" >/dev/null
        "$bin/dosegate-hub" fleet publish-job --hub "$demo/hub" --broker "localhost:$broker_port" \
            --gateway-id "$gw" --job "$out" >/dev/null
    }
    say "hub: revoke job $gw-revoked-1 (a list valid for 6 s), then publish that job"
    before=$(logged "fleet metadata applied")
    "$bin/dosegate-hub" fleet revoke --hub "$demo/hub" --broker "localhost:$broker_port" \
        --job "$gw-revoked-1" --lifetime 6s
    wait_for 30 "the revocation list at the gateway" logged_more "fleet metadata applied" "$before"
    expires_at=$((SECONDS + 6))
    n=$(logged "job done")
    sign_and_publish "$demo/revoked.cose" --job-id "$gw-revoked-1"
    wait_for 60 "the revoked job's refusal" logged_more "job done" "$n"
    say "the revocation list expires; a new job is refused until a current list arrives"
    while [ $SECONDS -le $expires_at ]; do sleep 0.5; done
    n=$(logged "job done")
    sign_and_publish "$demo/after-expiry.cose"
    wait_for 60 "the refusal under an expired list" logged_more "job done" "$n"
    last_job_receipted
fi

say "stopping the gateway (SIGTERM) and the hub"
kill -TERM "$gateway_pid"
wait "$gateway_pid" || die "the gateway did not stop cleanly"
"$bin/dosegate-hub" fleet status --hub "$demo/hub" --json >"$demo/hub-status.json"
cleanup
trap - EXIT

say "summary"
python3 - "$demo" <<'PY'
import json, sys, os
demo = sys.argv[1]
reports = [json.loads(json.loads(l)["fields"]["report"]) for l in open(os.path.join(demo, "gateway.log")) if '"job done"' in l]
for r in reports:
    doses = ", ".join("-" if d is None else f"{d:.2f} mg" for d in r["doses_mg"]) or "-"
    codes = ", ".join(r["codes"]) or "-"
    print(f"  {r['key']:<34} {r['stage']:<11} dose {doses:<10} codes {codes}  (verified in {r['verify_ms']:.1f} ms; ledger seq {r['seq']})")
hub = json.load(open(os.path.join(demo, "hub-status.json")))
print("  hub:", json.dumps(hub, separators=(",", ":"))[:400])
print(f"  files: {demo}/  gateway.log  hub-events.jsonl  state/ledger/  printer-executed.gcode  spectra/")
PY

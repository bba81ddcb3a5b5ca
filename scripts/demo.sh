#!/usr/bin/env bash
# make demo: a job cycle on this machine, with throwaway keys under build/demo/.
#
# Today it runs the hub side and the gateway's intake check offline: create a hub, sign a job for
# gateway spoke-01 from a printlet's G-code and a prescription, verify it as the gateway would, then
# show how the gateway refuses the same job tampered with, sent to another gateway, or replayed.
# (The printer link, PAT release, ledger and MQTT legs join this script as they land.)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=target/release
demo=build/demo
rm -rf "$demo" && mkdir -p "$demo"

say() { printf '\n== %s\n' "$*"; }
gcode=gateway/core/tests/data/gcode/slicer/hctz-cylinder-7.2x2.6.gcode   # real PrusaSlicer output
policy=policies/fdm-hctz-printlet.toml
rx=provisioning/examples/prescription-hctz.toml

say "hub: create keys and a trust root"
"$bin/dosegate-hub" init --dir "$demo/hub" --hub-id hub.demo --jobs-keys 2 --jobs-threshold 2

say "hub: sign a job for spoke-01"
"$bin/dosegate-hub" sign-job --hub "$demo/hub" --gcode "$gcode" --prescription "$rx" \
    --policy "$policy" --gateway-id spoke-01 --out "$demo/job.cose" --compress

say "gateway spoke-01: check the job"
"$bin/dosegate" check-job "$demo/job.cose" --trust "$demo/hub/trust-root.cbor" \
    --policy "$policy" --gateway-id spoke-01

say "attacker: flip one byte of the signed job"
python3 - "$demo/job.cose" "$demo/tampered.cose" <<'PY'
import sys
data = bytearray(open(sys.argv[1], "rb").read())
data[len(data) // 2] ^= 0x01
open(sys.argv[2], "wb").write(data)
PY
set +e
"$bin/dosegate" check-job "$demo/tampered.cose" --trust "$demo/hub/trust-root.cbor" \
    --policy "$policy" --gateway-id spoke-01
echo "(exit $?)"

say "gateway spoke-02 receives spoke-01's job"
"$bin/dosegate" check-job "$demo/job.cose" --trust "$demo/hub/trust-root.cbor" \
    --policy "$policy" --gateway-id spoke-02
echo "(exit $?)"

say "the same job delivered twice"
job_id=$("$bin/dosegate" check-job "$demo/job.cose" --trust "$demo/hub/trust-root.cbor" \
    --policy "$policy" --gateway-id spoke-01 --json | python3 -c 'import json,sys; j=json.load(sys.stdin)["job"]; print(j["seq"], j["job_id"])')
echo "$job_id" > "$demo/history"
"$bin/dosegate" check-job "$demo/job.cose" --trust "$demo/hub/trust-root.cbor" \
    --policy "$policy" --gateway-id spoke-01 --history "$demo/history"
echo "(exit $?)"
set -e

say "done: files are in $demo/"

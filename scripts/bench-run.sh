#!/usr/bin/env bash
# The running gateway's figures, from RUNS whole job cycles of scripts/demo.sh (loopback: mosquitto,
# swtpm, printer and spectrometer simulators, hub):
#   - job published by the hub → its `verified` record stored at the hub (includes the publisher's
#     TLS connect), and the gateway's own arrival → `verified` durable time;
#   - last spectrum exported → the hub's receipt covering the release record;
#   - `dosegate run` peak RSS (VmHWM, logged at stop).
# Prints one JSON line per run and a summary line (median, min, max).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS="${RUNS:-5}"
T="$(mktemp -d)"
trap 'rm -rf "$T"' EXIT
for i in $(seq "$RUNS"); do
    DEMO_DIR="$T/run$i" scripts/demo.sh >/dev/null
    python3 - "$T/run$i" <<'PY'
import json, os, re, sys
d = sys.argv[1]
log = [json.loads(l) for l in open(os.path.join(d, "gateway.log"))]
hub = [json.loads(l) for l in open(os.path.join(d, "hub-events.jsonl"))]
verified = next(l["fields"] for l in log if l["fields"].get("message") == "job verified")
done = next(json.loads(l["fields"]["report"]) for l in log if l["fields"].get("message") == "job done")
published = int(open(os.path.join(d, "published_at_ms")).read())
stored = next(e["at_ms"] for e in hub if e["kind"] == "stored" and e["seq"] == verified["seq"])
spectra = [int(m) for m in re.findall(r"at_ms=(\d+)", open(os.path.join(d, "spectrometer.log")).read())]
receipt = next(e["at_ms"] for e in hub if e["kind"] == "receipted" and e["seq"] >= done["seq"])
rss = [l["fields"]["peak_rss_kib"] for l in log if l["fields"].get("message") == "dosegate stopped"]
print(json.dumps({
    "publish_to_verified_stored_ms": stored - published,
    "gateway_arrival_to_verified_durable_ms": round(float(verified["verify_ms"]), 2),
    "last_spectrum_to_release_receipted_ms": receipt - spectra[-1],
    "peak_rss_kib": rss[-1],
    "stage": done["stage"],
}))
PY
done | tee "$T/runs.jsonl"
python3 - "$T/runs.jsonl" <<'PY'
import json, statistics, sys
runs = [json.loads(l) for l in open(sys.argv[1])]
out = {}
for k in ["publish_to_verified_stored_ms", "gateway_arrival_to_verified_durable_ms", "last_spectrum_to_release_receipted_ms", "peak_rss_kib"]:
    v = [r[k] for r in runs]
    out[k] = {"median": statistics.median(v), "min": min(v), "max": max(v)}
print(json.dumps({"runs": len(runs), **out}))
PY

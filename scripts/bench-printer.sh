#!/usr/bin/env bash
# Printer link benchmark: DoseGate's streamer against OctoPrint's own serial layer (MachineCom),
# side by side in one run, both streaming to the same simulated Marlin printer on a pty.
#   1. lines/s at printer reply latencies 0, 1, 4, 16 ms (a USB-serial latency timer), best of
#      BENCH_REPEAT runs (default 3; the machine is shared): with ADVANCED_OK, ours with Marlin's
#      default 128-byte receive buffer and with a 1024-byte one (a common 32-bit board setting),
#      and OctoPrint; without ADVANCED_OK, ours and OctoPrint. Lines/s counts the program's lines
#      for both; our time includes the final M400+M114 checkpoint (OctoPrint makes none).
#   2. moves lost or repeated with 5 % injected faults (2.5 % corrupted lines, 2.5 % forced
#      resends) over BENCH_LOSS_MOVES moves (default 100000), ours and OctoPrint.
# Needs scripts/deps/40-octoprint.sh. Writes build/bench-printer/{results.jsonl,table.md}.
set -euo pipefail
cd "$(dirname "$0")/.."
export RUST_BACKTRACE=0
moves="${BENCH_MOVES:-1000}"
loss_moves="${BENCH_LOSS_MOVES:-100000}"
repeat="${BENCH_REPEAT:-3}"
py=build/venv-octoprint/bin/python
[ -x "$py" ] || bash scripts/deps/40-octoprint.sh
cargo build --release --locked -q -p dosegate-printer-sim -p dosegate --example stream_bench
sim=target/release/dosegate-printer-sim
ours=target/release/examples/stream_bench
out=build/bench-printer
rm -rf "$out"; mkdir -p "$out/opbase"
printf 'plugins:\n  _disabled:\n  - firmware_check\n' > "$out/opbase/config.yaml"
gen() { python3 - "$1" <<'PY'
import sys
n = int(sys.argv[1]); e = 0.0
print("G90\nM82\nG92 E0")
for i in range(n):
    e += 0.01
    print(f"G1 X{100 + (i % 50) * 0.2:.2f} Y{100 + (i // 50 % 50) * 0.2:.2f} E{e:.4f} F1800")
PY
}
gen "$moves" > "$out/moves.gcode"
gen "$loss_moves" > "$out/loss.gcode"

# run TOOL LABEL LATENCY GCODE SIM-ARGS... : one stream, one JSON line in results.jsonl
run() {
    local tool=$1 label=$2 lat=$3 gcode=$4; shift 4
    local link="$out/tty" log="$out/exec.log"
    "$sim" --link "$link" --latency-ms "$lat" --exec-log "$log" "$@" > /dev/null 2> "$out/sim.err" &
    local pid=$!
    sleep 0.5
    local res
    case "$tool" in
        ours) res=$(timeout 1800 "$ours" "$link" "$gcode" 32 "${BYTES:-127}" 2>> "$out/ours.err" || true) ;;
        octoprint) res=$( (cd "$out" && timeout 1800 "../../$py" ../../gateway/printer-sim/peer/op_stream.py \
                        "$(basename "$gcode")" --port tty --basedir opbase 2>> octoprint.err) | grep '"tool"' | tail -n 1 || true) ;;
    esac
    sleep 0.5
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    python3 - "$gcode" "$log" "$label" "$lat" "$res" >> "$out/results.jsonl" <<'PY'
import json, sys
from collections import Counter
gcode, log, label, lat, res = sys.argv[1:6]
want = [l.strip() for l in open(gcode) if l.startswith(("G0 ", "G1 "))]
got = [l.strip() for l in open(log)]
def norm(line):
    # The simulator logs each command as Marlin's parser read it (numbers in shortest form; a
    # host may send `X100.20` or `X100.2`): compare letters and numeric values.
    words = line.split()
    return (words[0],) + tuple((w[0], float(w[1:]) if len(w) > 1 else None) for w in words[1:])
want = [norm(l) for l in want]; got = [norm(l) for l in got]
w, g = Counter(want), Counter(got)
lost = sum((w - g).values()); repeated = sum((g - w).values())
# The first JSON object on the line (OctoPrint may log right after it without a newline).
r = json.JSONDecoder().raw_decode(res[res.index("{"):])[0] if "{" in res else {"outcome": "no result"}
print(json.dumps({"label": label, "latency_ms": float(lat), "moves": len(want), "executed": len(got),
                  "lost": lost, "repeated": repeated, "in_order": got == want,
                  "lines_per_s": r.get("lines_per_s"), "outcome": r.get("outcome") or ("failed" if r.get("failed") or r.get("error") else "completed"),
                  "resends": r.get("resends"), "raw": r}))
PY
    tail -n 1 "$out/results.jsonl" | cut -c1-200
}

for i in $(seq "$repeat"); do
    for lat in 0 1 4 16; do
        BYTES=127 run ours "ours, ADVANCED_OK, 128 B RX" "$lat" "$out/moves.gcode"
        BYTES=1023 run ours "ours, ADVANCED_OK, 1024 B RX" "$lat" "$out/moves.gcode" --rx-buffer 1024
        run octoprint "OctoPrint, ADVANCED_OK firmware" "$lat" "$out/moves.gcode"
        BYTES=127 run ours "ours, no ADVANCED_OK" "$lat" "$out/moves.gcode" --no-advanced-ok
        run octoprint "OctoPrint, no ADVANCED_OK firmware" "$lat" "$out/moves.gcode" --no-advanced-ok
    done
done
faults=(--corrupt-per-mille 25 --resend-per-mille 25 --seed 42)
BYTES=127 run ours "loss: ours, 5 % faults" 0 "$out/loss.gcode" "${faults[@]}"
run octoprint "loss: OctoPrint, 5 % faults" 0 "$out/loss.gcode" "${faults[@]}"

python3 - "$out/results.jsonl" > "$out/table.md" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
best = {}
for r in rows:
    k = (r["label"], r["latency_ms"])
    if k not in best or (r["lines_per_s"] or 0) > (best[k]["lines_per_s"] or 0):
        best[k] = r | {"runs": [x["lines_per_s"] for x in rows if (x["label"], x["latency_ms"]) == k]}
print("| run | latency ms | moves | lines/s (best) | all runs | lost | repeated | in order | outcome |")
print("|---|---|---|---|---|---|---|---|---|")
for (label, lat), r in best.items():
    lps = "" if r["lines_per_s"] is None else f'{r["lines_per_s"]:.0f}'
    runs = " ".join("-" if x is None else f"{x:.0f}" for x in r["runs"])
    bad = sum(1 for x in rows if (x["label"], x["latency_ms"]) == (label, lat) and (x["lost"] or x["repeated"] or not x["in_order"]))
    print(f'| {label} | {lat:g} | {r["moves"]} | {lps} | {runs} | {r["lost"]} | {r["repeated"]} | {r["in_order"]} | {r["outcome"]} |')
    if bad:
        print(f"| ^ {bad} run(s) of this row lost, repeated or reordered moves | | | | | | | | |")
PY
cat "$out/table.md"

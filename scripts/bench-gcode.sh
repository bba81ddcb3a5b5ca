#!/usr/bin/env bash
# G-code check benchmark (BENCHMARKS.md, "G-code check"). Makes a >= 50 MB G-code with the real
# slicer (PrusaSlicer, validated FDM profile, one large gyroid-filled part), then measures on one
# core, in the same run:
#   1. dosegate's whole check (parse + virtual print + policy + SHA-256) beside the `gcode` crate's
#      parser, in one process (cargo bench, file already in memory);
#   2. `dosegate check-gcode` end to end (a reader thread reads the file in 256 KiB chunks and
#      hashes them beside the checking thread), min and median of RUNS runs, on one core and on two;
#   3. OctoPrint's own analysis (`octoprint analysis gcode`) on the same file;
#   4. the peak RSS of `dosegate check-gcode` on a >= 500 MB file (the same program 8 times).
# Files go to build/bench-gcode (gitignored); the 500 MB file is deleted afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/bench-gcode
mkdir -p "$out"
rx=provisioning/examples/prescription-hctz.toml
core=(taskset -c 0)
command -v taskset >/dev/null || core=()

if [ ! -s "$out/big.gcode" ]; then
    cargo run --release -q -p dosegate-core --example printlet_stl -- cylinder 100 15 256 "$out/big.stl"
    prusa-slicer --export-gcode --load policies/slicer/fdm-hctz-printlet.ini --center 100,100 \
        --layer-height 0.1 --first-layer-height 0.2 --fill-density 40% --fill-pattern gyroid \
        --output "$out/big.gcode" "$out/big.stl" >/dev/null
fi
# The shipped policy caps programs at 8 MB; the bench lifts only that cap.
sed 's/^max_bytes = .*/max_bytes = 1_000_000_000_000/' policies/fdm-hctz-printlet.toml >"$out/policy.toml"
size_mb=$(($(stat -c %s "$out/big.gcode") / 1000000))
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== file: $out/big.gcode, ${size_mb} MB"

echo "== 1. in process, one core: dosegate check vs gcode 0.7 parse"
"${core[@]}" cargo bench -q -p dosegate-core --bench gcode_check -- \
    "$PWD/$out/big.gcode" "$PWD/$out/policy.toml" "$PWD/$rx" 2>/dev/null | grep -v '^$'

echo "== 2. dosegate check-gcode, end to end (min / median of ${RUNS:=7} runs)"
# The check runs on the main thread; a reader thread reads and hashes the chunks beside it. Once
# with both threads on one core (taskset -c 0), once with the reader free to use the other core.
cargo build --release -q -p dosegate
cli() {
    local label=$1
    shift
    for _ in $(seq "$RUNS"); do
        t0=$(date +%s.%N)
        "$@" /usr/bin/time -f "%U %S" -o "$out/time.txt" \
            target/release/dosegate check-gcode "$out/big.gcode" --policy "$out/policy.toml" --prescription "$rx" \
            >/dev/null || [ $? -eq 1 ]
        t1=$(date +%s.%N)
        echo "$(echo "$t1 - $t0" | bc -l) $(tail -n 1 "$out/time.txt")"
    done | sort -n | awk -v s="$size_mb" -v l="$label" '
        { wall[NR] = $1; cpu[NR] = $2 + $3 }
        END {
            m = int((NR + 1) / 2); best = cpu[1]; for (i = 1; i <= NR; i++) if (cpu[i] < best) best = cpu[i]
            printf "   %s: wall min %.3f s = %.0f MB/s, median %.3f s = %.0f MB/s; CPU (both threads) min %.2f s = %.0f MB/s\n",
                l, wall[1], s / wall[1], wall[m], s / wall[m], best, s / best
        }'
}
if [ ${#core[@]} -gt 0 ]; then
    cli "one core (taskset -c 0)" taskset -c 0
    cli "two cores (taskset -c 0,1)" taskset -c 0,1
else
    cli "unpinned"
fi

echo "== 3. OctoPrint analysis (peer)"
venv=build/venv-octoprint
if [ ! -x "$venv/bin/octoprint" ]; then
    if [ -x scripts/deps/40-octoprint.sh ]; then bash scripts/deps/40-octoprint.sh; else
        python3 -m venv "$venv"
        "$venv/bin/pip" install --quiet --disable-pip-version-check "octoprint==1.11.8" "pyyaml>=6"
    fi
fi
t0=$(date +%s.%N)
"${core[@]}" /usr/bin/time -f "   %e s wall, %U s user, peak RSS %M KB" \
    "$venv/bin/octoprint" analysis gcode "$out/big.gcode" >"$out/octoprint.out"
t1=$(date +%s.%N)
awk -v s="$size_mb" -v a="$t0" -v b="$t1" 'BEGIN { printf "   %.1f MB/s wall\n", s / (b - a) }'

echo "== 4. peak RSS of check-gcode on >= 500 MB"
for _ in 1 2 3 4 5 6 7 8; do cat "$out/big.gcode"; done >"$out/huge.gcode"
echo "   $(($(stat -c %s "$out/huge.gcode") / 1000000)) MB"
"${core[@]}" /usr/bin/time -f "   %e s wall, %U s user, peak RSS %M KB" \
    target/release/dosegate check-gcode "$out/huge.gcode" --policy "$out/policy.toml" --prescription "$rx" \
    >/dev/null || [ $? -eq 1 ]
rm -f "$out/huge.gcode"

#!/usr/bin/env bash
# Job verification benchmark (BENCHMARKS.md, "Job verification"): slices a printlet batch with the
# real slicer into a ~3 MB program (the largest DESIGN.md expects), then times, on one core,
# stage 1 alone (synthetic 3 MiB job) and both stages (real program). Target: < 20 ms per job.
set -euo pipefail
cd "$(dirname "$0")/.."
out=build/bench-job
mkdir -p "$out"
core=(taskset -c 0)
command -v taskset >/dev/null || core=()
# A batch of 20 fine printlets (1024-facet mesh, 0.1 mm layers): ~2.8 MB, ~98 000 commands.
if [ ! -s "$out/job.gcode" ]; then
    cargo run --release -q -p dosegate-core --example printlet_stl -- cylinder 10 4 1024 "$out/p.stl"
    prusa-slicer --export-gcode --load policies/slicer/fdm-hctz-printlet.ini --center 100,100 \
        --layer-height 0.1 --first-layer-height 0.2 --duplicate 20 --duplicate-distance 8 \
        --output "$out/job.gcode" "$out/p.stl" >/dev/null
fi
# Such a batch prints for ~1.8 h at temperature, beyond the shipped design space's 1 h: the bench
# lifts only the time limits, so the program is checked in full and accepted.
sed 's/^max_nozzle_on_s = .*/max_nozzle_on_s = 36000.0/; s/^max_time_s = .*/max_time_s = 36000.0/' \
    policies/fdm-hctz-printlet.toml >"$out/policy.toml"
echo "== machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); load $(cut -d' ' -f1-3 /proc/loadavg)"
echo "== program: $(stat -c %s "$out/job.gcode") bytes"
DOSEGATE_BENCH_GCODE="$PWD/$out/job.gcode" DOSEGATE_BENCH_POLICY="$PWD/$out/policy.toml" DOSEGATE_BENCH_UNITS=20 \
    "${core[@]}" \
    cargo bench -q -p dosegate-core --bench job_verify 2>/dev/null | grep -E "^(authenticate|verify)|time:|min .* median"

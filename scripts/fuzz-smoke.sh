#!/usr/bin/env bash
# Runs every cargo-fuzz target in gateway/fuzz for a short while (FUZZ_SECONDS, default 15 each).
# cargo-fuzz needs nightly compiler flags; the machine has one stable toolchain, so
# RUSTC_BOOTSTRAP=1 lets stable accept them, for the fuzz build only.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${FUZZ_SECONDS:-10}"
if ! command -v cargo-fuzz >/dev/null 2>&1; then
    cargo install --locked cargo-fuzz --version 0.13.2
fi
export RUSTC_BOOTSTRAP=1
fd=(--fuzz-dir gateway/fuzz)
targets=$(cargo fuzz list "${fd[@]}")
[ -n "$targets" ] || { echo "fuzz: no targets"; exit 1; }
cargo fuzz build -O "${fd[@]}"
for t in $targets; do
    corpus="gateway/fuzz/corpus/$t"
    mkdir -p "$corpus"
    if [ -d "gateway/fuzz/seeds/$t" ]; then cp -n gateway/fuzz/seeds/"$t"/* "$corpus/" 2>/dev/null || true; fi
    echo "fuzz: $t for ${secs}s"
    cargo fuzz run -O "${fd[@]}" "$t" "$corpus" -- -max_total_time="$secs" -rss_limit_mb=2048 -max_len=1048576 \
        2>&1 | grep -E "^(Done|==|SUMMARY|.*(panicked|ERROR))" || true
    # cargo fuzz run exits non-zero on a crash; the pipeline above hides that, so check artifacts.
    if compgen -G "gateway/fuzz/artifacts/$t/crash-*" >/dev/null || compgen -G "gateway/fuzz/artifacts/$t/oom-*" >/dev/null; then
        echo "fuzz: $t found a failing input:"; ls gateway/fuzz/artifacts/"$t"; exit 1
    fi
done
echo "fuzz: all targets ran clean"

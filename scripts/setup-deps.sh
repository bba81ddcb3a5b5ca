#!/usr/bin/env bash
# Installs everything the demo and the test suite need, from Debian, PyPI and crates.io only.
# Idempotent: on a machine that has it all, it checks and returns in seconds.
#   scripts/deps/*.apt   Debian packages, one per line (comments with #)
#   scripts/deps/*.sh    further steps (Python venvs, cargo tools), run in name order
set -euo pipefail
cd "$(dirname "$0")/.."

mapfile -t wanted < <(cat scripts/deps/*.apt 2>/dev/null | sed 's/#.*//' | tr -s ' \t' '\n' | sed '/^$/d' | sort -u)
missing=()
for pkg in "${wanted[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if ((${#missing[@]})); then
    echo "setup: installing ${#missing[@]} Debian package(s): ${missing[*]}"
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
for step in scripts/deps/*.sh; do
    [ -e "$step" ] || continue
    bash "$step"
done

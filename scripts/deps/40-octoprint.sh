#!/usr/bin/env bash
# OctoPrint (PyPI, pinned) in a private virtual environment: its Virtual Printer and its own serial
# layer (MachineCom) are the printer link's third-party peer in tests and benchmarks.
# Idempotent: returns at once when the pinned version is already installed.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=build/venv-octoprint
want=1.11.8
if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c "import octoprint, yaml, serial; assert octoprint.__version__ == '$want'" 2>/dev/null; then
    exit 0
fi
echo "setup: installing OctoPrint $want into $venv"
python3 -m venv "$venv"
"$venv/bin/pip" install --quiet --disable-pip-version-check "octoprint==$want" "pyyaml>=6"

#!/usr/bin/env bash
# The image's secure-boot key enrolment tool: virt-firmware (PyPI) writes our own PK/KEK/db into
# a copy of OVMF's variable store. Installed in a gitignored venv; quick when already there.
set -euo pipefail
cd "$(dirname "$0")/../.."
venv=.venv-image
if [ ! -x "$venv/bin/virt-fw-vars" ]; then
    python3 -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check 'virt-firmware==24.11'
fi

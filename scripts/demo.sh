#!/usr/bin/env bash
# The main job, offline: installs the 'latest' stack into .venvs/latest if needed and
# runs the quickstart on the real MiniLM (pass --dense-model/--colbert-model for LFM2.5).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venvs/latest
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r stacks/latest.txt
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e core
fi
HF_HUB_OFFLINE=1 "$venv/bin/python" examples/quickstart.py --offline "$@"

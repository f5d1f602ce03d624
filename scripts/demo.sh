#!/usr/bin/env bash
# The main job, offline: installs the 'latest' stack into .venvs/latest if needed, then
# indexes the bundled multilingual sample catalog into an embedded Qdrant store (Qdrant's
# engine in-process, qdrant+edge://, a local folder, no server), searches it and prints nDCG@10. Extra arguments go to
# `lfm-retrieval demo` (e.g. --model PATH for a local copy of LFM2.5-Embedding-350M).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=.venvs/latest
if [ ! -x "$venv/bin/lfm-retrieval" ]; then
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r stacks/latest.txt
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps -e core -e integrations/qdrant
fi
if [ $# -eq 0 ]; then set -- --offline; fi
HF_HUB_OFFLINE=${HF_HUB_OFFLINE:-1} "$venv/bin/lfm-retrieval" demo "$@"

#!/usr/bin/env bash
# The project's test command. On a fresh machine (Python + pip) it installs each
# supported stack into .venvs/<stack> from the pinned files in stacks/, installs the
# project into it, and runs the whole suite there; then it lints once.
#   bash scripts/test.sh                 # both stacks
#   LFM_STACKS=latest bash scripts/test.sh -k dense   # one stack, extra pytest args
set -uo pipefail
cd "$(dirname "$0")/.."

stacks=${LFM_STACKS:-"latest full"}
# The latest stack saves ColBERT vectors here and the full stack compares against them.
export LFM_CROSS_STACK_DIR=${LFM_CROSS_STACK_DIR:-$(mktemp -d)}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
status=0

for stack in $stacks; do
  venv=.venvs/$stack
  echo "== stack '$stack' ($venv)"
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" || exit 1
  "$venv/bin/python" -m pip install -q --disable-pip-version-check -r "stacks/$stack.txt" || exit 1
  editables=(-e core)
  for project in integrations/*/pyproject.toml; do
    [ -e "$project" ] && editables+=(-e "$(dirname "$project")")
  done
  "$venv/bin/python" -m pip install -q --disable-pip-version-check --no-deps "${editables[@]}" || exit 1
  "$venv/bin/python" -m pytest -p no:cacheprovider "$@" || status=1
done

echo "== ruff"
"$venv/bin/ruff" check . && "$venv/bin/ruff" format --check . || status=1
exit $status

#!/usr/bin/env bash
# The project's test command. On a fresh machine (Python + pip) it installs each
# supported stack into .venvs/<stack> from the pinned files in stacks/, installs the
# project into it, and runs the whole suite there; then it lints once.
#   bash scripts/test.sh                 # both stacks
#   LFM_STACKS=latest bash scripts/test.sh -k dense   # one stack, extra pytest args
# Then (whole suite only) it installs each distribution alone and runs its quick tests, and builds the docs
# (see CONTRIBUTING.md).
set -uo pipefail
cd "$(dirname "$0")/.."

stacks=${LFM_STACKS:-"latest full"}
# The latest stack saves ColBERT vectors here and the full stack compares against them.
export LFM_CROSS_STACK_DIR=${LFM_CROSS_STACK_DIR:-$(mktemp -d)}
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
# llama.cpp on one thread: beside the databases and the suite's own threads, ggml's spinning threads otherwise
# wait for busy cores (docs/runtimes/gguf.md, Settings)
export LFM_RETRIEVAL_GGUF_THREADS=${LFM_RETRIEVAL_GGUF_THREADS:-1}
# llama-cpp-python (the gguf runtime) builds from source: portable x86-64 (AVX2, no AVX-512, no AMX: a native
# build on AMX Xeons dies with SIGILL), ggml's own threads instead of a second OpenMP pool beside torch's, no
# multimodal library. pip's wheel cache keeps the build (keyed by version, not by these flags): docs/runtimes/gguf.md
export CMAKE_ARGS=${CMAKE_ARGS:-"-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF -DGGML_OPENMP=OFF -DLLAVA_BUILD=OFF"}
status=0

# Disk first: a full disk otherwise shows up minutes in, as pip's "[Errno 28] No space left on device".
# Sizes measured on x86_64: latest 2.5 GB, full 6.3 GB (torch 2.11 is a CUDA build), the
# per-distribution venvs 7.3 GB, pytest's temporary folders up to 4.6 GB.
need_gb=5
for stack in $stacks; do
  [ -x ".venvs/$stack/bin/python" ] || need_gb=$((need_gb + $([ "$stack" = full ] && echo 7 || echo 3)))
done
[ "${LFM_CHECK_DISTRIBUTIONS:-$(($# == 0))}" = 1 ] && [ ! -d .venvs/check ] && need_gb=$((need_gb + 8))
free_gb=$(($(df -Pk . | awk 'NR == 2 {print $4}') / 1048576))
if [ "$free_gb" -lt "$need_gb" ]; then
  echo "scripts/test.sh: about $need_gb GB of free disk needed here, $free_gb GB free ($(pwd)). Free some space" \
    "(old .venvs/ or pytest temporary folders under ${TMPDIR:-/tmp}) and run it again." >&2
  exit 1
fi

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
  # Tests marked one_stack (Milvus and pgvector adapters, kill-and-resume, the Ray engine) run on the latest
  # stack only while the stacks pin their store clients and Ray alike (tests/conftest.py).
  LFM_STACK=$stack "$venv/bin/python" -m pytest -p no:cacheprovider "$@" || status=1
done

# Each distribution alone, from its declared ranges and no stack file, at the newest and the lowest
# versions they admit (scripts/check_distributions.py). With the whole suite (no pytest args), or
# when LFM_CHECK_DISTRIBUTIONS=1; LFM_CHECK_DISTRIBUTIONS=0 skips it.
if [ "${LFM_CHECK_DISTRIBUTIONS:-$(($# == 0))}" = 1 ]; then
  echo "== each distribution alone"
  "$venv/bin/python" scripts/check_distributions.py || status=1
fi

echo "== ruff"
"$venv/bin/ruff" check . && "$venv/bin/ruff" format --check . || status=1

# The documentation site, warnings as errors (its pins are in the latest stack).
echo "== docs"
if [ -x .venvs/latest/bin/mkdocs ]; then
  NO_MKDOCS_2_WARNING=1 .venvs/latest/bin/mkdocs build --strict --quiet --site-dir "$(mktemp -d)" || status=1
else
  echo "mkdocs is not installed (.venvs/latest): run with the latest stack to build the docs" >&2
  status=1
fi
exit $status

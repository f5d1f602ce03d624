#!/usr/bin/env bash
# Fill .whl/ (git-ignored through .git/info/exclude) with what benchmarks/gpu/run.sh installs on a
# GPU machine that cannot reach a package index: the pinned versions (stacks/latest.txt) of the
# packages its image lacks or holds at other versions, this project's core, and Ray 2.60 without
# its Java jars, RLlib, Tune, Train, Serve, LLM and the dashboard's web client (the wheel is 79 MB,
# over the 64 MiB a call may carry; what the catalog job uses of Ray is left whole).
set -euo pipefail
cd "$(dirname "$0")/../.."
mkdir -p .whl .git/info
grep -qx "/.whl/" .git/info/exclude 2>/dev/null || echo "/.whl/" >> .git/info/exclude
rm -f .whl/*.whl .whl/*.tar.xz
pin() { grep -iE "^$1==" stacks/latest.txt; }
packages=(transformers sentence-transformers fastapi starlette pydantic pydantic_core annotated-types
  typing-inspection uvicorn orjson typer click opentelemetry-api jsonschema jsonschema-specifications referencing
  rpds-py)
wheels=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d .whl
  --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64)
python3 -m pip download -q "${wheels[@]}" $(for p in "${packages[@]}"; do pin "$p"; done)
python3 -m pip wheel -q --no-deps ./core -w .whl
tmp=$(mktemp -d)
python3 -m pip download -q "${wheels[@]/.whl/$tmp}" "$(pin ray)"
(cd "$tmp" && unzip -q ray-*.whl && rm ray-*.whl \
  && rm -rf ray/jars ray/rllib ray/tune ray/train ray/serve ray/llm ray/dashboard/client \
  && tar cf - . | xz -T0 -6 > "$OLDPWD/.whl/ray-stripped.tar.xz")
rm -rf "$tmp"
du -sh .whl

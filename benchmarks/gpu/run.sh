#!/usr/bin/env bash
# The suite's GPU checks and benchmarks in one call on a lent GPU machine (no package index there):
#   1. exactness   padded batches equal each text alone on CUDA (benchmarks/gpu/exactness.py)
#   2. encoder     tokens/s on the catalog mix, bf16: sentence-transformers vs DenseEncoder
#   3. queries     dense query p50/p95 at 1/8/32 concurrent callers, in-process
#   4. colbert     ColBERT query + exact MaxSim over 10,000 cached documents on the GPU
#   5. serving     dense query over HTTP, `lfm-retrieval serve --device cuda`
#   6. engines     the catalog job: local engine vs Ray with one GPU actor, same GPU
#   7. servers     vLLM / SGLang (where installed on the machine) vs the torch runtime: tokens/s and vectors
#                  through DenseEncoder / ColBERTEncoder(base_url=...) (benchmarks/gpu/servers.py)
# Prepare once with benchmarks/gpu/wheels.sh (fills .whl/; the code itself comes from core/src), then run from the repository root with
# .whl carried. Each part has its own time limit; logs and JSON land in $OUT (results.tar.gz, all.log).
# LFM_GPU_SMOKE=1 runs every part tiny on the CPU (a rehearsal of this script, not a measurement);
# LFM_GPU_PARTS="serving engines" runs only the parts named.
set -u
cd "$(dirname "$0")/../.."
OUT=${OUT:-$(mktemp -d)}
RES=$(mktemp -d)
SITE=/tmp/lfm-site
if [[ ! -d $SITE/lfm_retrieval ]]; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target "$SITE" .whl/*.whl || exit 1
  tar xJf .whl/ray-stripped.tar.xz -C "$SITE" || exit 1
fi
export PYTHONPATH=$PWD/core/src:$SITE PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false RAY_AUTH_MODE=disabled
export LFM_BENCH_CHECKPOINTS=$(mktemp -d)  # each real-size random checkpoint built once for every part
export PATH=$SITE/bin:$PATH

if [[ ${LFM_GPU_SMOKE:-0} == 1 ]]; then
  dev=(--device cpu) dtype=float32 texts=16 queries=6 docs=300 records=100 repeats=1 budget=8 engines="serve vllm sglang"
else
  dev=(--device cuda) dtype=bfloat16 texts=4096 queries=256 docs=10000 records=6000 repeats=3 budget=1 engines="vllm sglang"
fi
summary=()
part() {  # part NAME SECONDS COMMAND...: run, log, keep the exit status
  local name=$1 limit=$(( $2 * budget )) start=$SECONDS; shift 2
  [[ -n ${LFM_GPU_PARTS:-} && " $LFM_GPU_PARTS " != *" $name "* ]] && return
  echo "=== $name (limit ${limit}s): $*" | tee -a "$OUT/all.log"
  timeout "$limit" "$@" > "$RES/$name.log" 2>&1
  local rc=$?
  grep -v -E "Warning|warn\(|Loading weights|it/s\]|INFO|logging_progress|cut at the length limit" "$RES/$name.log" \
    | tail -n 40 >> "$OUT/all.log"
  summary+=("$name rc=$rc $((SECONDS - start))s")
  echo "=== $name rc=$rc in $((SECONDS - start))s" | tee -a "$OUT/all.log"
  tar czf "$OUT/results.tar.gz" -C "$RES" .
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm --format=csv || true
  python3 -c "import torch, transformers, sentence_transformers as st, ray; print('torch', torch.__version__,
    'transformers', transformers.__version__, 'sentence-transformers', st.__version__, 'ray', ray.__version__)"
  nproc; uptime; } > "$OUT/all.log" 2>&1

part exactness 60 python3 benchmarks/gpu/exactness.py "${dev[@]}" --out "$RES/exactness.json"
part encoder 140 python3 benchmarks/encoder/run.py "${dev[@]}" --texts $texts --repeats $repeats \
  --batch-size 32 --our-batch-sizes 32 512 --paddings 0 1.0 --checkpoint "$LFM_BENCH_CHECKPOINTS/lfm25-random" --out "$RES"
part queries 60 python3 benchmarks/concurrency/run.py --model lfm25-random "${dev[@]}" --dtype $dtype \
  --queries $queries --repeats $repeats --out "$RES"
part colbert 75 python3 benchmarks/concurrency/run.py --model lfm25-colbert-random "${dev[@]}" --dtype $dtype \
  --queries $queries --repeats $repeats --maxsim-docs $docs --out "$RES"
part serving 120 python3 benchmarks/serving/run.py --model lfm25-random "${dev[@]}" --dtype $dtype \
  --queries $queries --repeats $repeats --load-wait 0,0.1 --out "$RES"
part engines 120 python3 benchmarks/catalog/engines.py --model lfm25-random "${dev[@]}" --dtype $dtype \
  --records $records --store memory --stores memory --out "$RES"
# vLLM / SGLang are not in .whl (their wheels pass the 64 MiB a call carries): this part runs what the
# machine's image has, skipping an engine it lacks; LFM_MODELS_DIR=folder with LFM2.5-Embedding-350M and
# LFM2.5-ColBERT-350M uses the real models instead of the random real-size checkpoints.
real=()
[[ -n ${LFM_MODELS_DIR:-} ]] && real=(--dense "$LFM_MODELS_DIR/LFM2.5-Embedding-350M" --colbert "$LFM_MODELS_DIR/LFM2.5-ColBERT-350M")
part servers 300 python3 benchmarks/gpu/servers.py "${dev[@]}" --dtype $dtype --texts $texts --repeats $repeats \
  --engines $engines "${real[@]}" --out "$RES"
echo "--- summary" >> "$OUT/all.log"
printf '%s\n' "${summary[@]}" | tee -a "$OUT/all.log"

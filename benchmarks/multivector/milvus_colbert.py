"""ColBERT on Milvus: the Milvus hybrid and multivector stores against exact MaxSim, and ingest
against raw ``MilvusClient.upsert`` of the same rows.

Synthetic ColBERT-shaped data, the PostgreSQL benchmark's recipe (no ColBERT checkpoint runs
offline): unit 128-d token vectors from topic vocabularies, documents of 20 to 180 tokens,
32-token queries; a document's dense vector is the mean of its tokens (a stand-in dense model:
the hybrid's recall is its agreement with MaxSim). One run, on a Milvus 2.3
standalone server of its own (the ``milvus`` wheel, default settings), measures:

* exact MaxSim over every document (``ExactMaxSim``, numpy): the baseline of p50 and recall;
* ``kind="hybrid"``: dense HNSW prefetch N -> exact MaxSim in the client, for several N;
* ``kind="multivector"``: MUVERA HNSW first stage (default encoding) -> exact MaxSim, for several
  ``prefetch`` values;
* ingest: records/s of each store's ``upsert`` against ``MilvusClient.upsert`` of the hybrid
  layout's rows already built (the raw path), and the bytes per document of the token pages.

Searches run after ``flush`` and once Milvus reports every row indexed (HNSW on sealed segments).

    .venvs/latest/bin/python benchmarks/multivector/milvus_colbert.py                  # 10,000 documents
    .venvs/latest/bin/python benchmarks/multivector/milvus_colbert.py --docs 2000      # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))
from common import load_average, run_record, write_results
from synthetic import WIDTH, corpus, row, timed, unit

from lfm_retrieval.scoring import ExactMaxSim
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, open_store
from lfm_retrieval.testing.servers import milvus_server
from lfm_retrieval_milvus.rows import to_token_rows

RESULTS = Path(__file__).parent / "results"


def wait_indexed(store, timeout: float = 600.0) -> float:
    """Flush, then wait until Milvus has indexed every row; the seconds it took."""
    started = time.perf_counter()
    store.client.flush(store.collection)
    while time.perf_counter() - started < timeout:
        index = store.client.describe_index(store.collection, "vector")
        if index.get("pending_index_rows", 0) == 0 and index.get("indexed_rows", 0) >= index.get("total_rows", 1):
            break
        time.sleep(1.0)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--prefetch", type=int, nargs="*", default=[100, 300, 1000], help="hybrid: per search")
    parser.add_argument(
        "--muvera-prefetch", type=int, nargs="*", default=[100, 200, 400], help="multivector: the store's prefetch"
    )
    args = parser.parse_args()
    load_before = load_average()
    docs, queries = corpus(args.docs, args.queries, expansion_on_topic=False)  # the recipe its figures were measured on
    dense = np.stack([unit(d.mean(axis=0)) for d in docs])
    dense_queries = [unit(q.mean(axis=0)) for q in queries]
    tokens = sum(len(d) for d in docs)
    print(f"{len(docs)} documents ({tokens} token vectors, {WIDTH}-d), {len(queries)} queries; load {load_before}")

    exact = ExactMaxSim(docs)
    truth, seconds = timed(lambda q: [f"doc-{r.index}" for r in exact.search(q, 10)], queries)
    rows = [row("exact MaxSim (numpy, all documents)", truth, seconds, truth)]
    report: dict = {"docs": len(docs), "token_vectors": tokens, "queries": len(queries)}
    spec_tokens = CollectionSpec(WIDTH, model="colbert-stand-in", kind="multivector", vector_type="float16")
    hybrid_spec = HybridSpec(CollectionSpec(WIDTH, model="mean-pool-stand-in"), spec_tokens)
    hybrid_records = [Record(f"doc-{i}", dense[i], {"i": i}, "", token_vectors=d) for i, d in enumerate(docs)]

    with tempfile.TemporaryDirectory(prefix="lfm-bench-milvus-") as folder, milvus_server(folder) as uri:
        report["server"] = uri
        # the raw path: the hybrid layout's rows, already built, through MilvusClient.upsert
        raw = open_store(f"{uri}/bench_raw", kind="hybrid")
        raw.ensure_collection(hybrid_spec)
        from lfm_retrieval.stores.records import validate_records

        built = to_token_rows(validate_records(hybrid_records, hybrid_spec), hybrid_spec, list(dense))
        report["token_page_bytes_per_doc"] = sum(sum(len(p) for p in r["tokens"]) for r in built) / len(built)
        report["raw_float16_bytes_per_doc"] = tokens * WIDTH * 2 / len(docs)
        started = time.perf_counter()
        for start in range(0, len(built), 512):
            raw.client.upsert(raw.collection, built[start : start + 512])
        report["raw_upsert_records_per_s"] = len(built) / (time.perf_counter() - started)
        raw.close()
        print(f"raw MilvusClient.upsert: {report['raw_upsert_records_per_s']:.0f} records/s")

        for kind, spec in (("hybrid", hybrid_spec), ("multivector", spec_tokens)):
            store = open_store(f"{uri}/bench_{kind}", kind=kind)
            store.ensure_collection(spec)
            records = hybrid_records if kind == "hybrid" else [
                Record(r.key, None, r.payload, "", token_vectors=r.token_vectors) for r in hybrid_records
            ]  # fmt: skip
            started = time.perf_counter()
            store.upsert(records, batch_size=512)
            ingest = time.perf_counter() - started
            report[f"{kind}_ingest_records_per_s"] = len(docs) / ingest
            report[f"{kind}_flush_and_index_s"] = wait_indexed(store)
            report[f"{kind}_info"] = store.info()
            indexed = report[f"{kind}_flush_and_index_s"]
            print(f"{kind}: ingest {len(docs) / ingest:.0f} records/s; flush + index {indexed:.1f} s")
            if kind == "hybrid":
                pairs = list(zip(dense_queries, queries, strict=True))
                for prefetch in args.prefetch:
                    found, seconds = timed(
                        lambda p, n=prefetch, s=store: [h.key for h in s.search(p[0], p[1], 10, prefetch=n)], pairs
                    )
                    rows.append(row(f"Milvus hybrid (dense prefetch {prefetch} -> MaxSim)", found, seconds, truth))
            else:
                for prefetch in args.muvera_prefetch:
                    searcher = open_store(f"{uri}/bench_{kind}", kind=kind, prefetch=prefetch)
                    found, seconds = timed(lambda q, s=searcher: [h.key for h in s.search(q, 10)], queries)
                    rows.append(row(f"Milvus multivector (MUVERA {prefetch} -> MaxSim)", found, seconds, truth))
                    searcher.close()
            store.close()

    base = rows[0]["p50_ms"]
    print(f"\n{'method':<52} {'p50 ms':>8} {'p95 ms':>8} {'x exact':>8} {'recall@10':>10}")
    for item in rows:
        item["p50_vs_exact"] = item["p50_ms"] / base
        print(f"{item['method']:<52} {item['p50_ms']:>8.2f} {item['p95_ms']:>8.2f} ", end="")
        print(f"{item['p50_vs_exact']:>8.3f} {item['recall@10']:>10.3f}")
    for kind in ("hybrid", "multivector"):
        ratio = report[f"{kind}_ingest_records_per_s"] / report["raw_upsert_records_per_s"]
        report[f"{kind}_ingest_vs_raw_upsert"] = ratio
        print(f"{kind} ingest: {report[f'{kind}_ingest_records_per_s']:.0f} records/s ({ratio:.2f}x raw upsert)")
    pages, raw16 = report["token_page_bytes_per_doc"], report["raw_float16_bytes_per_doc"]
    print(f"token pages: {pages:.0f} bytes/doc (raw float16 {raw16:.0f})")
    report |= {"rows": rows, **run_record(load_before)}
    write_results(report, RESULTS, "milvus")


if __name__ == "__main__":
    main()

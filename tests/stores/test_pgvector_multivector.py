"""ColBERT on PostgreSQL: the multivector (MUVERA first stage) and hybrid (dense prefetch) pgvector stores,
against the live PostgreSQL + pgvector of ``services.py``: the kit's suites, recall@10 against exact MaxSim
over all documents, filters in the first stage, the recorded MUVERA settings, the CLI and ``copy``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator

import numpy as np
import pytest

from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError
from lfm_retrieval.muvera import DEFAULT_PREFETCH
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, Store, copy_uri, open_store
from lfm_retrieval.testing.stores import HybridStoreSuite, MultiVectorStoreSuite

pytest.importorskip("lfm_retrieval_pgvector")
pytest.importorskip("fastembed")
psycopg = pytest.importorskip("psycopg")

from stores.colbert_corpus import (  # noqa: E402
    MUVERA,
    check_a_filter_reaches_the_first_stage,
    check_cli_index_and_search,
    check_copy_from_qdrant_edge,
    recalls_at_10,
)
from stores.test_pgvector_store import PgvectorFixture, with_table  # noqa: E402

pytestmark = pytest.mark.one_stack

_tables = itertools.count()


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


class TestPgVectorMultiVector(PgvectorFixture, MultiVectorStoreSuite):
    """The multivector conformance suite (MUVERA first stage at its defaults)."""


class TestPgVectorHybrid(PgvectorFixture, HybridStoreSuite):
    """The hybrid conformance suite (dense HNSW prefetch, exact MaxSim rerank)."""


# -- recall against exact MaxSim over every document ------------------------------------------------


def test_recall_at_10_against_exact_maxsim(open_kind, record_property) -> None:
    """Recall@10 of each store against exact MaxSim over all 600 documents; the hybrid store ranks
    exactly as an exact dense prefetch + MaxSim would."""
    recalls = recalls_at_10(open_kind, prefetches=(100, 300))
    for name, value in recalls.items():
        print(f"pgvector {name}: recall@10 vs exact MaxSim over 600 documents = {value:.3f}")
        record_property(name, value)
    assert all(recalls[f"hybrid prefetch={p} vs the exact two-stage reference"] == 1.0 for p in (100, 300)), recalls
    # The hybrid's recall is its dense model's agreement with ColBERT (here: mean-pooled tokens, whose
    # top 100 holds 0.79 of MaxSim's top 10 on this data); the store adds no loss (asserted above).
    assert recalls["hybrid prefetch=300"] >= 0.95 and recalls[MUVERA] >= 0.95, recalls


@pytest.mark.parametrize("kind", ["hybrid", "multivector"])
def test_a_filter_that_excludes_the_first_stage_top_1_returns_the_best_allowed_document(open_kind, kind):
    check_a_filter_reaches_the_first_stage(open_kind, kind)


# -- the collection's settings ----------------------------------------------------------------------


def test_muvera_settings_are_recorded_and_a_reopen_rebuilds_the_same_encoder(open_kind, postgres_dsn):
    spec = CollectionSpec(16, "dot", model="c", kind="multivector")
    table = table_name("muv")
    store = open_kind("multivector", table)
    assert store.prefetch == DEFAULT_PREFETCH == 300, "the core's default, as every MUVERA stage"
    store.ensure_collection(spec)
    rng = np.random.default_rng(1)
    records = [
        Record(f"k{i}", None, {}, "", token_vectors=rng.normal(size=(4, 16)).astype(np.float32)) for i in range(5)
    ]
    store.upsert(records)
    reopened = open_kind("multivector", table, prefetch=2)
    assert reopened.collection_spec() == spec
    assert reopened._muvera == store._muvera and reopened._muvera.config()["dim_proj"] == 16
    assert [h.key for h in reopened.search(records[3].token_vectors, 1)] == ["k3"]
    with pytest.raises(CollectionMismatchError, match="multivector collection"):
        open_kind("hybrid", table).collection_spec()
    with pytest.raises(CollectionMismatchError, match="multivector collection"):
        open_kind("dense", table).collection_spec()
    with pytest.raises(ValueError, match="prefetch must be a positive int"):
        open_kind("multivector", table, prefetch=0)
    with pytest.raises(TypeError, match="candidates"):  # the old name is gone, not silently ignored
        open_kind("multivector", table, candidates=2)


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
    check_cli_index_and_search(store, mode, dense_path, colbert_path, tmp_path)


@pytest.mark.parametrize("kind", ["multivector", "hybrid"])
def test_copy_from_qdrant_edge_to_postgresql(kind, tmp_path, postgres_dsn):
    pytest.importorskip("qdrant_edge")
    from stores.test_copy import assert_same_collection

    target = with_table(postgres_dsn, table_name(f"copy_{kind[:5]}"))
    source, destination = check_copy_from_qdrant_edge(kind, tmp_path, target)
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

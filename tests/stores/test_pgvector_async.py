"""Native async search on PostgreSQL: each pgvector kind's ``asearch`` runs the statements of ``search`` on
psycopg's async pool, without a worker thread, and answers exactly what ``search`` answers (live PostgreSQL of
``services.py``)."""

from __future__ import annotations

import asyncio
import gc
import re
import time
import uuid
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from lfm_retrieval.stores import Record, Store, open_store
from lfm_retrieval.testing.stores import DIMENSION, query_of, record_of, spec_of

pytest.importorskip("lfm_retrieval_pgvector")
psycopg = pytest.importorskip("psycopg")

from stores.test_pgvector_store import with_table  # noqa: E402

pytestmark = pytest.mark.one_stack

FILTER = {"i": {"gte": 10}, "tag": "even"}


class Filled:
    """One kind's table of 40 records, and a store that has written them (spec and layout read)."""

    def __init__(self, kind: str, table: str, store: Store, records: list[Record]) -> None:
        self.kind, self.table, self.store, self.records = kind, table, store, records
        self.options: dict[str, Any] = {"prefetch": 20} if kind == "hybrid" else {}

    def query(self, i: int) -> tuple[Any, ...]:
        return query_of(self.kind, self.records[i])


@pytest.fixture(scope="module", params=["dense", "multivector", "hybrid"])
def filled(request: pytest.FixtureRequest, postgres_dsn: str) -> Iterator[Filled]:
    kind = request.param
    if kind == "multivector":
        pytest.importorskip("fastembed")  # the MUVERA first stage
    table = f"async_{kind[:5]}_{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(5)
    records = [record_of(kind, f"k{i}", rng, {"i": i, "tag": ("odd", "even")[i % 2 == 0]}) for i in range(40)]
    store = open_store(with_table(postgres_dsn, table), kind=kind)
    store.ensure_collection(spec_of(kind))
    store.upsert(records)
    yield Filled(kind, table, store, records)
    store.close()


def connections_of(dsn: str, application: str, *, settle: bool = False) -> int:
    """How many connections named ``application`` the server holds (``settle``: once those closing have gone,
    waiting up to 5 s for none)."""
    with psycopg.connect(dsn, autocommit=True) as conn:
        for _ in range(50 if settle else 1):
            count = conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name = %s", (application,))
            if (held := count.fetchone()[0]) == 0:
                break
            time.sleep(0.1)
    return held


@pytest.mark.parametrize("flt", [None, FILTER], ids=["unfiltered", "filtered"])
def test_asearch_equals_search(filled: Filled, flt: dict[str, Any] | None) -> None:
    store, options = filled.store, filled.options
    queries = [filled.query(i) for i in (3, 12, 30)]
    expected = [store.search(*query, 5, flt, **options) for query in queries]  # type: ignore[attr-defined]

    async def run() -> list[list[Any]]:
        return [await store.asearch(*query, 5, flt, **options) for query in queries]  # type: ignore[attr-defined]

    assert asyncio.run(run()) == expected  # ids, keys, scores and payloads
    assert all(len(hits) == 5 for hits in expected)
    if flt:
        assert all(hit.payload["i"] >= 10 and hit.payload["tag"] == "even" for hits in expected for hit in hits)
    else:
        assert [hits[0].key for hits in expected] == ["k3", "k12", "k30"]


def test_twenty_concurrent_asearches_answer_as_search_without_a_thread(
    filled: Filled, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, options = filled.store, filled.options
    queries = [filled.query(i) for i in range(20)]
    expected = [store.search(*query, 3, None, **options) for query in queries]  # type: ignore[attr-defined]

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("asearch used a worker thread or the sync pool")

    async def run() -> list[list[Any]]:
        with monkeypatch.context() as patch:  # for the searches (the loop's own shutdown may use its executor)
            patch.setattr(asyncio, "to_thread", refuse)
            patch.setattr(asyncio.get_running_loop(), "run_in_executor", refuse)
            patch.setattr(store, "_transaction", refuse)  # the sync pool's connections
            searches = (store.asearch(*query, 3, None, **options) for query in queries)  # type: ignore[attr-defined]
            return await asyncio.gather(*searches)

    assert asyncio.run(run()) == expected


def test_bad_arguments_raise_what_search_raises(filled: Filled) -> None:
    store, options, kind = filled.store, filled.options, filled.kind
    query = filled.query(0)
    wide = np.ones(DIMENSION + 1, np.float32) if kind != "multivector" else np.ones((2, DIMENSION + 1), np.float32)
    bad_vector = (wide, query[1]) if kind == "hybrid" else (wide,)
    for args in [(*query, 5, {"i": {"bogus": 1}}), (*bad_vector, 5, None), (*query, 0, None)]:
        with pytest.raises(Exception) as raised:
            store.search(*args, **options)  # type: ignore[attr-defined]
        with pytest.raises(type(raised.value), match=f"^{re.escape(str(raised.value))}$"):
            asyncio.run(store.asearch(*args, **options))  # type: ignore[attr-defined]


def test_asearch_in_successive_event_loops_and_close(filled: Filled, postgres_dsn: str) -> None:
    """A store opened cold searches in one event loop, then in the next (on a new pool); ``close`` and
    ``aclose`` leave no connection behind."""
    query, options = filled.query(7), filled.options
    expected = filled.store.search(*query, 4, None, **options)  # type: ignore[attr-defined]
    application = f"lfm_async_{uuid.uuid4().hex[:8]}"
    fresh = open_store(with_table(postgres_dsn, filled.table, application_name=application), kind=filled.kind)
    try:
        for _ in range(2):
            assert asyncio.run(fresh.asearch(*query, 4, None, **options)) == expected  # type: ignore[attr-defined]
        assert connections_of(postgres_dsn, application) > 0
    finally:
        fresh.close()
    gc.collect()  # the pools of ended loops close their connections as they are collected
    assert connections_of(postgres_dsn, application, settle=True) == 0

    async def search_then_aclose() -> list[Any]:
        try:
            return await fresh.asearch(*query, 4, None, **options)  # type: ignore[attr-defined]
        finally:
            await fresh.aclose()

    assert asyncio.run(search_then_aclose()) == expected
    assert connections_of(postgres_dsn, application, settle=True) == 0

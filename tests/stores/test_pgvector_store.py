"""pgvector adapter specifics, against the real PostgreSQL + pgvector server of ``services.py``:
halfvec, the bulk path (index built after the load), the HNSW plan, hostile names and values,
and filter semantics that agree with ``lfm_retrieval.stores.filters.matches``."""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable, Iterator
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pytest

from lfm_retrieval.errors import (
    CollectionMismatchError,
    InvalidRecordError,
    StoreUnavailableError,
)
from lfm_retrieval.stores import CollectionSpec, Record, Store, matches, open_store, parse_filter
from lfm_retrieval.testing.stores import DenseStoreSuite, unique_name

pytest.importorskip("lfm_retrieval_pgvector")
psycopg = pytest.importorskip("psycopg")

from lfm_retrieval_pgvector.uri import parse_uri  # noqa: E402

pytestmark = pytest.mark.one_stack  # both stacks pin the same store clients (tests/conftest.py)

INJECTION = "x'); DROP TABLE t; --"
_tables = itertools.count()
rng = np.random.default_rng(11)


def with_table(dsn: str, table: str, **extra: str) -> str:
    parts = urlsplit(dsn)
    query = dict(parse_qsl(parts.query), table=table, **extra)
    return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.fixture
def sql(postgres_dsn):
    """An autocommit connection of the test's own, for looking at what the adapter did."""
    with psycopg.connect(postgres_dsn, autocommit=True) as conn:
        yield conn


@pytest.fixture
def open_table(postgres_dsn):
    """``open_table(spec, **options)``: a store on a fresh table; closed after the test."""
    opened = []

    def make(spec: CollectionSpec | None = None, *, table: str | None = None, schema: str | None = None, **options):
        name = table or f"pgv_{next(_tables)}_{int(time.time() * 1000) % 10**8}"
        extra = {"schema": schema} if schema else {}
        store = open_store(with_table(postgres_dsn, name, **extra), **options)
        opened.append(store)
        if spec is not None:
            store.ensure_collection(spec)
        return store

    yield make
    for store in opened:
        store.close()


class PgvectorFixture:
    """``make_store`` of the suite's ``kind`` on tables of the test's own (the multivector and hybrid
    suites use it too)."""

    kind: str  # the suite's

    @pytest.fixture
    def make_store(self, postgres_dsn: str) -> Iterator[Callable[..., Store]]:
        names: dict[str, str] = {}
        opened: list[Store] = []

        def make(name: str = "c") -> Store:
            names.setdefault(name, unique_name(f"{self.kind[:5]}_{name}_{int(time.time() * 1000) % 10**8}"))
            opened.append(open_store(with_table(postgres_dsn, names[name]), kind=self.kind))
            return opened[-1]

        yield make
        for store in opened:
            store.close()


class TestPgVectorDense(PgvectorFixture, DenseStoreSuite):
    """The dense conformance suite on tables of the test's own."""


def _records(n: int, dimension: int, offset: int = 0) -> list[Record]:
    vectors = rng.normal(size=(n, dimension)).astype(np.float32)
    return [
        Record(f"SKU-{i:05d}", vectors[i - offset], {"price": float(i), "colour": ["red", "green", "blue"][i % 3]})
        for i in range(offset, offset + n)
    ]


def _indexes(sql, table: str, schema: str = "public") -> dict[str, str]:
    rows = sql.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s AND tablename = %s", (schema, table)
    ).fetchall()
    return dict(rows)


def _hnsw(sql, store) -> str | None:
    return _indexes(sql, store.layout.table, store.layout.schema).get(store.layout.hnsw_index)


# -- (a) halfvec --------------------------------------------------------------------------------


def test_halfvec_round_trip(open_table, sql):
    spec = CollectionSpec(dimension=16, vector_type="float16", model="half")
    store = open_table(spec)
    records = _records(30, 16)
    assert store.upsert(records) == 30
    column = sql.execute(
        "SELECT format_type(atttypid, atttypmod) FROM pg_attribute "
        "WHERE attrelid = %s::regclass AND attname = 'embedding'",
        (f'"{store.layout.table}"',),
    ).fetchone()[0]
    assert column == "halfvec(16)"
    assert "halfvec_cosine_ops" in _hnsw(sql, store)
    for record in records[:5]:
        top = store.search(record.vector, k=1)[0]
        assert top.key == record.key and top.payload == record.payload
        assert top.score == pytest.approx(1.0, abs=1e-3)
    # the stored values are the float16 roundings of what was written
    stored = sql.execute(
        f'SELECT embedding::text FROM "{store.layout.table}" WHERE key = %s', (records[0].key,)
    ).fetchone()[0]
    values = np.array([float(v) for v in stored.strip("[]").split(",")], dtype=np.float32)
    np.testing.assert_allclose(values, records[0].vector.astype(np.float16).astype(np.float32), rtol=1e-3)


# -- (b) the bulk path --------------------------------------------------------------------------


def test_a_bulk_load_into_an_empty_table_builds_the_hnsw_index_after_the_load(open_table, sql):
    spec = CollectionSpec(dimension=8, model="bulk")
    store = open_table(spec)
    assert _hnsw(sql, store) is None, "ensure_collection makes no index: the first load builds it"
    records = _records(1200, 8)
    seen_during_load = []

    def stream():
        for position, record in enumerate(records):
            if position == 500:  # two batches of 250 are committed by now
                seen_during_load.append(
                    (sql.execute(f'SELECT count(*) FROM "{store.layout.table}"').fetchone()[0], _hnsw(sql, store))
                )
            yield record

    assert store.upsert(stream(), batch_size=250) == 1200
    assert seen_during_load == [(500, None)], "rows were loaded with no HNSW index in the way"
    indexes = _indexes(sql, store.layout.table)
    assert "USING hnsw (embedding vector_cosine_ops)" in indexes[store.layout.hnsw_index]
    assert "USING gin (metadata jsonb_path_ops)" in indexes[store.layout.gin_index]
    # later upserts merge through the indexed table: new, changed and repeated records
    changed = Record(records[7].key, -records[7].vector, {**records[7].payload, "price": -1.0})
    assert store.upsert([changed, *_records(10, 8, offset=5000), records[8]]) == 12
    assert store.count() == 1210
    top = store.search(changed.vector, k=1)[0]
    assert top.key == changed.key and top.payload["price"] == -1.0
    assert store.search(records[9].vector, k=1)[0].key == records[9].key


def test_a_key_repeated_in_one_load_keeps_its_last_record(open_table):
    store = open_table(CollectionSpec(dimension=8, model="bulk"))
    first, second = _records(2, 8)
    again = Record(first.key, second.vector, {"colour": "last"})
    with store.bulk_load():
        store.upsert([first, again])  # twice in one batch
        store.upsert([Record(first.key, second.vector, {"colour": "later batch"})])  # and in a later batch
    assert store.count() == 1
    assert store.search(second.vector, k=1)[0].payload == {"colour": "later batch"}


def test_bulk_load_builds_the_indexes_once_over_several_upserts_and_after_a_failure(open_table, sql):
    store = open_table(CollectionSpec(dimension=8, model="bulk"))
    with pytest.raises(InvalidRecordError, match="SKU-BAD"), store.bulk_load():
        store.upsert(_records(100, 8))
        store.upsert(_records(100, 8, offset=100))
        assert _hnsw(sql, store) is None, "no index while the load runs"
        store.upsert([Record("SKU-BAD", np.full(8, np.nan), {})])
    assert store.count() == 200, "the committed batches stay; the bad batch wrote nothing"
    assert _hnsw(sql, store) is not None, "what was committed is indexed"
    # emptied and loaded again: the index is dropped for the load and rebuilt after it
    store.delete([r.key for r in _records(200, 8)])
    assert store.count() == 0
    store.upsert(_records(50, 8, offset=300))
    assert _hnsw(sql, store) is not None and store.count() == 50


def test_index_builds_can_be_left_to_create_indexes(open_table, sql):
    store = open_table(CollectionSpec(dimension=8, model="bulk"), build_indexes=False)
    records = _records(300, 8)
    store.upsert(records[:100])
    store.upsert(records[100:])
    assert _hnsw(sql, store) is None and store.search(records[5].vector, k=1)[0].key == records[5].key
    store.create_indexes()
    assert "vector_cosine_ops" in _hnsw(sql, store)


def test_a_nul_character_postgresql_cannot_hold_is_refused_with_its_key(open_table):
    store = open_table(CollectionSpec(dimension=8, model="json"))
    store.upsert(_records(2, 8))
    batch = _records(3, 8, offset=10)
    batch[1] = Record("NUL-PAYLOAD", np.ones(8), {"text": "a\x00b"})
    with pytest.raises(InvalidRecordError, match=r"NUL-PAYLOAD.*NUL"):
        store.upsert(batch)
    with pytest.raises(InvalidRecordError, match="NUL-KEY"):
        store.upsert([Record("NUL-KEY\x00", np.ones(8), {})])
    assert store.count() == 2


# -- (c) the plan -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("distance", "vector_type", "ops"),
    [
        ("cosine", "float32", "vector_cosine_ops"),
        ("dot", "float32", "vector_ip_ops"),
        ("euclid", "float16", "halfvec_l2_ops"),
    ],
)
def test_searches_use_the_hnsw_index_with_the_right_ops_class(open_table, sql, distance, vector_type, ops):
    store = open_table(CollectionSpec(dimension=16, distance=distance, vector_type=vector_type, model="plan"))
    records = _records(3000, 16)
    store.upsert(records, batch_size=1000)
    assert f"USING hnsw (embedding {ops})" in _hnsw(sql, store)
    sql.execute(f'ANALYZE "{store.layout.table}"')
    plan = store.explain(records[0].vector, k=10, enable_seqscan="off")
    assert f"Index Scan using {store.layout.hnsw_index}" in plan, plan
    exact = open_store(f"memory://pg-plan-{distance}")
    exact.ensure_collection(store.spec)
    exact.upsert(records)  # (with dot, a record's own vector need not be its nearest)
    assert store.search(records[0].vector, k=1)[0].key == exact.search(records[0].vector, k=1)[0].key


def test_a_filtered_hnsw_search_is_complete(open_table, sql):
    """A selective filter through the HNSW index (iterative scan) finds every match an exact scan finds."""
    store = open_table(CollectionSpec(dimension=16, model="plan"), search_settings={"enable_seqscan": "off"})
    records = _records(3000, 16)
    store.upsert(records, batch_size=1000)
    sql.execute(f'ANALYZE "{store.layout.table}"')
    query = rng.normal(size=16)
    for spec, k in (({"price": {"gte": 100, "lt": 160}}, 25), ({"price": {"lt": 6}}, 10)):
        plan = store.explain(query, k=k, filter=spec)
        assert f"Index Scan using {store.layout.hnsw_index}" in plan, plan
        node = parse_filter(spec)
        matching = [r for r in records if matches(node, r.payload)]
        scores = np.array([r.vector @ query / np.linalg.norm(r.vector) / np.linalg.norm(query) for r in matching])
        exact = [matching[i].key for i in np.argsort(-scores)[:k]]
        hits = store.search(query, k=k, filter=spec)
        assert [h.key for h in hits] == exact


# -- (d) hostile names and values ---------------------------------------------------------------


def test_hostile_filter_keys_values_and_table_names_leave_everything_intact(open_table, sql, postgres_dsn):
    sql.execute("CREATE SCHEMA IF NOT EXISTS hostile")
    sql.execute("CREATE TABLE IF NOT EXISTS hostile.t (x int)")
    store = open_table(CollectionSpec(dimension=8, model="hostile"), table=INJECTION, schema="hostile")
    store.upsert(_records(5, 8))
    for spec in (
        {INJECTION: "red"},
        {"colour": INJECTION},
        {"colour": {"in": [INJECTION, "red"]}},
        {INJECTION: {"gte": 1}},
        {"$or": [{INJECTION: INJECTION}, {"price": {"lt": 2}}]},
    ):
        store.search(rng.normal(size=8), k=5, filter=spec)
        store.count(spec)
    record = Record(f"key-{INJECTION}", rng.normal(size=8), {INJECTION: INJECTION}, fingerprint=INJECTION)
    store.upsert([record])
    assert store.search(record.vector, k=1, filter={INJECTION: INJECTION})[0].key == record.key
    store.delete([INJECTION])
    assert store.count() == 6
    tables = {row[0] for row in sql.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'hostile'")}
    assert {"t", INJECTION, "lfm_retrieval_collections"} <= tables
    # the same name opened again finds its spec in the registry
    again = open_table(table=INJECTION, schema="hostile")
    with pytest.raises(CollectionMismatchError, match="already exists"):
        again.ensure_collection(CollectionSpec(dimension=8, model="another"))


# -- filter semantics: the SQL agrees with matches() ---------------------------------------------

TRICKY = [
    {"v": 1},
    {"v": 1.0},
    {"v": True},
    {"v": False},
    {"v": 0},
    {"v": "1"},
    {"v": "red"},
    {"v": ["red"]},
    {"v": {"red": 1}},
    {"v": None},
    {},
    {"v": 0.30000000000000004},
    {"v": 0.3},
    {"v": -2.5},
    {"v": 10**20},
    {"v": 1e16},
    {"other": 1},
    {"v.w": 1},
]
TRICKY_FILTERS = [
    {"v": 1},
    {"v": 1.0},
    {"v": True},
    {"v": False},
    {"v": 0},
    {"v": "1"},
    {"v": "red"},
    {"v": {"in": ["red", "1"]}},
    {"v": {"in": [-2.5, 0.3]}},
    {"v": {"gt": 0.3}},
    {"v": {"gte": 0.3}},
    {"v": {"gt": 0, "lte": 1}},
    {"v": {"lt": 0.30000000000000004}},
    {"v": {"gte": 1e16}},
    {"v": {"gt": float("-inf")}},
    {"v": {"lt": float("inf"), "gt": 0.5}},
    {"v": {"gt": float("inf")}},
    {"v": float("inf")},
    {"v.w": 1},
    {"$or": [{"v": "red"}, {"v": {"lt": 0}}]},
    {"$and": [{"v": {"gte": 0}}, {"v": {"lt": 1}}]},
]


def test_filters_agree_with_the_python_reference_on_tricky_payloads(open_table):
    store = open_table(CollectionSpec(dimension=4, model="filters"))
    records = [Record(f"r{i}", rng.normal(size=4), payload) for i, payload in enumerate(TRICKY)]
    store.upsert(records)
    for spec in TRICKY_FILTERS:
        node = parse_filter(spec)
        expected = {r.key for r in records if matches(node, r.payload)}
        found = {h.key for h in store.search(rng.normal(size=4), k=len(records), filter=spec)}
        assert found == expected, spec
        assert store.count(spec) == len(expected), spec


# -- opening ------------------------------------------------------------------------------------


def test_an_unreachable_server_is_named_with_the_password_masked():
    start = time.monotonic()
    store = open_store("postgresql://nobody:s3cret@127.0.0.1:9/db?table=products", timeout=2)
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:9") as error:
        store.count()
    assert "s3cret" not in str(error.value) and "nobody:***@" in str(error.value)
    assert time.monotonic() - start < 30


def test_the_uri_gives_libpq_its_parameters_and_keeps_the_table_and_schema():
    target = parse_uri("postgresql://u:pw@h:5433/db?table=Items%20v2&schema=s&options=-c%20work_mem%3D64MB&password=x")
    assert (target.table, target.schema) == ("Items v2", "s")
    assert target.dsn == "postgresql://u:pw@h:5433/db?options=-c%20work_mem%3D64MB&password=x"
    assert "pw" not in target.display and "password=x" not in target.display
    assert target.display.startswith("postgresql://u:***@h:5433/db?")


def test_a_uri_without_a_table_is_refused():
    with pytest.raises(ValueError, match=r"\?table=NAME"):
        open_store("postgresql://user@localhost/db")


def test_a_table_not_made_by_the_adapter_is_not_taken_over(open_table, sql):
    sql.execute("CREATE TABLE IF NOT EXISTS foreign_items (id int PRIMARY KEY, embedding text)")
    store = open_table(table="foreign_items")
    with pytest.raises(CollectionMismatchError, match="not made by lfm-retrieval"):
        store.ensure_collection(CollectionSpec(dimension=8))
    assert (
        sql.execute("SELECT count(*) FROM information_schema.columns WHERE table_name = 'foreign_items'").fetchone()[0]
        == 2
    )


def test_a_schema_parameter_and_a_long_table_name(open_table, sql):
    name = "a_rather_long_table_name_for_products_in_many_locales_v2_xyz"  # 59 bytes: index names are shortened
    store = open_table(CollectionSpec(dimension=8, model="schema"), table=name, schema="catalog_ns")
    store.upsert(_records(20, 8))
    indexes = _indexes(sql, name, "catalog_ns")
    assert store.layout.hnsw_index in indexes and all(len(n.encode()) <= 63 for n in indexes)
    assert sql.execute(
        "SELECT dimension, model FROM catalog_ns.lfm_retrieval_collections WHERE table_name = %s", (name,)
    ).fetchone() == (8, "schema")

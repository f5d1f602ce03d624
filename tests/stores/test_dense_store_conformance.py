"""What every dense store must do, run against each real database (see conftest.KINDS)."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from lfm_retrieval import DenseEncoder
from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError, StoreUnavailableError
from lfm_retrieval.stores import CollectionSpec, Record, matches, open_store, parse_filter

SPEC = CollectionSpec(dimension=8, model="unit-test-model")
rng = np.random.default_rng(7)


def _records(n: int, offset: int = 0) -> list[Record]:
    colours = ["red", "green", "blue"]
    return [
        Record(
            f"SKU-{i:04d}/{'en' if i % 2 else 'de'}",
            rng.normal(size=8).astype(np.float32),
            {"sku": f"SKU-{i:04d}", "price": float(i), "colour": colours[i % 3], "locale": "en" if i % 2 else "de"},
        )
        for i in range(offset, offset + n)
    ]


# -- a real retrieval round trip --------------------------------------------------------------


@pytest.fixture(scope="session")
def faq_corpus(minilm_path):
    """English construction-law FAQ: answers as documents, each question's answer as its relevant item."""
    zaragoza = pytest.importorskip("zaragoza_construction_faq")
    items = zaragoza.load(lang="en")
    encoder = DenseEncoder(str(minilm_path), device="cpu")
    documents = encoder.encode_documents([item["a"] for item in items])
    queries = encoder.encode_queries([item["q"] for item in items])
    spec = CollectionSpec.for_encoder(encoder)
    records = [
        Record(item["id"], vector, {"category": item["category"], "answer": item["a"][:80]})
        for item, vector in zip(items, documents, strict=True)
    ]
    exact = open_store("memory://faq-exact")
    exact.ensure_collection(spec)
    exact.upsert(records)
    return spec, records, queries, [item["id"] for item in items], exact


def _recall_at_10(store, queries, relevant) -> float:
    return float(
        np.mean([rel in {h.key for h in store.search(q, k=10)} for q, rel in zip(queries, relevant, strict=True)])
    )


def test_real_retrieval_round_trip_matches_exact_search(make_store, faq_corpus):
    spec, records, queries, relevant, exact = faq_corpus
    store = make_store()
    store.ensure_collection(spec)
    assert store.upsert(records) == len(records)
    assert store.count() == len(records)
    exact_recall = _recall_at_10(exact, queries, relevant)
    assert exact_recall > 0.8, "MiniLM finds most answers: the corpus and encoder are real"
    assert _recall_at_10(store, queries, relevant) >= exact_recall - 0.02
    hit = store.search(queries[0], k=1)[0]
    expected = next(r for r in records if r.key == hit.key)
    assert hit.payload == expected.payload and hit.id == expected.id


# -- idempotence and updates --------------------------------------------------------------------


def test_upserting_again_changes_nothing_and_one_change_changes_one_record(make_store):
    store = make_store()
    store.ensure_collection(SPEC)
    records = _records(20)
    store.upsert(records)
    store.upsert(records)
    assert store.count() == 20
    changed = Record(records[5].key, -records[5].vector, {**records[5].payload, "price": 999.0})
    store.upsert([changed])
    assert store.count() == 20
    top = store.search(changed.vector, k=1)[0]
    assert top.key == changed.key and top.payload["price"] == 999.0
    assert store.search(records[6].vector, k=1)[0].payload == records[6].payload, "the others are untouched"


def test_delete_and_count_with_a_filter(make_store):
    store = make_store()
    store.ensure_collection(SPEC)
    records = _records(12)
    store.upsert(records)
    assert store.count({"colour": "red"}) == 4
    store.delete([records[0].key, "never-stored"])
    assert store.count() == 11 and store.count({"colour": "red"}) == 3


def test_async_search_equals_sync(make_store):
    store = make_store()
    store.ensure_collection(SPEC)
    records = _records(10)
    asyncio.run(store.aupsert(records))
    query = records[3].vector
    assert [h.key for h in asyncio.run(store.asearch(query, k=5))] == [h.key for h in store.search(query, k=5)]


# -- portable filters ---------------------------------------------------------------------------

FILTERS = [
    {"colour": "red"},
    {"price": {"gte": 10, "lt": 30}},
    {"locale": {"in": ["de"]}},
    {"colour": {"in": ["red", "blue"]}, "price": {"lte": 25}},
    {"$or": [{"colour": "green"}, {"price": {"gt": 35}}]},
    {"$and": [{"locale": "en"}, {"$or": [{"colour": "red"}, {"colour": "blue"}]}]},
]


@pytest.mark.parametrize("spec", FILTERS, ids=[str(f) for f in FILTERS])
def test_filters_return_exactly_the_matching_records(make_store, spec):
    store = make_store()
    store.ensure_collection(SPEC)
    records = _records(40)
    store.upsert(records)
    expected = {r.key for r in records if matches(parse_filter(spec), r.payload)}
    found = {h.key for h in store.search(rng.normal(size=8), k=40, filter=spec)}
    assert found == expected
    assert store.count(spec) == len(expected)


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "other",
    [
        CollectionSpec(dimension=16, model="unit-test-model"),
        CollectionSpec(dimension=8, distance="dot", model="unit-test-model"),
        CollectionSpec(dimension=8, model="another-model"),
    ],
    ids=["dimension", "distance", "model"],
)
def test_an_existing_collection_with_other_settings_is_refused(make_store, other):
    store = make_store("mismatch")
    store.ensure_collection(SPEC)
    store.upsert(_records(3))
    with pytest.raises(CollectionMismatchError, match="already exists"):
        make_store("mismatch").ensure_collection(other)
    assert store.count() == 3


@pytest.mark.parametrize("bad", ["nan", "short", "long"])
def test_a_bad_vector_is_refused_with_its_key_and_nothing_of_its_batch_is_written(make_store, bad):
    store = make_store()
    store.ensure_collection(SPEC)
    store.upsert(_records(3))
    batch = _records(4, offset=100)
    vector = {"nan": np.full(8, np.nan), "short": np.ones(7), "long": np.ones(9)}[bad]
    batch[2] = Record("SKU-BAD/en", vector, {})
    with pytest.raises(InvalidRecordError, match="SKU-BAD/en"):
        store.upsert(batch)
    assert store.count() == 3


INJECTION = "x'); DROP TABLE t; --"


def test_hostile_filter_keys_and_values_are_harmless(make_store):
    store = make_store()
    store.ensure_collection(SPEC)
    store.upsert(_records(5))
    for spec in ({INJECTION: "red"}, {"colour": INJECTION}, {"colour": {"in": [INJECTION, "red"]}}):
        hits = store.search(rng.normal(size=8), k=5, filter=spec)
        assert {h.payload["colour"] for h in hits} <= {"red"}
    assert store.count() == 5, "the collection and its rows are still there"
    record = Record(f"key-{INJECTION}", rng.normal(size=8), {INJECTION: INJECTION})
    store.upsert([record])
    assert store.search(record.vector, k=1, filter={INJECTION: INJECTION})[0].key == record.key


UNREACHABLE = {
    "qdrant-server": "qdrant://127.0.0.1:9/products",
    "pgvector": "postgresql://nobody@127.0.0.1:9/db?table=products",
    "milvus": "milvus://127.0.0.1:9/products",
}


def test_an_unreachable_server_is_named_within_a_bounded_time(kind):
    if kind not in UNREACHABLE:
        pytest.skip(f"{kind} has no server")
    start = time.monotonic()
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:9"):
        store = open_store(UNREACHABLE[kind], timeout=3)
        store.ensure_collection(SPEC)
    assert time.monotonic() - start < 30

"""The store protocol in the core: stable ids, portable filters, validation, open_store, exact store."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lfm_retrieval.errors import CollectionMismatchError, InvalidFilterError, InvalidRecordError
from lfm_retrieval.stores import (
    And,
    CollectionSpec,
    Eq,
    In,
    Or,
    Range,
    Record,
    matches,
    open_store,
    parse_filter,
    stable_id,
)

SPEC = CollectionSpec(dimension=4, model="tiny")


def test_stable_ids_are_uuid5_of_the_key():
    assert stable_id("SKU-1/en") == stable_id("SKU-1/en") != stable_id("SKU-1/de")
    assert len(stable_id("x")) == 36
    with pytest.raises(InvalidRecordError):
        stable_id("")


def test_filters_parse_to_a_tree():
    assert parse_filter({"brand": "acme"}) == Eq("brand", "acme")
    assert parse_filter({"price": {"gte": 1, "lt": 5}}) == Range("price", gte=1, lt=5)
    assert parse_filter({"locale": {"in": ["en", "de"]}}) == In("locale", ("en", "de"))
    assert parse_filter({"a": 1, "b": 2}) == And((Eq("a", 1), Eq("b", 2)))
    assert parse_filter({"$or": [{"a": 1}, {"b": 2}]}) == Or((Eq("a", 1), Eq("b", 2)))
    assert parse_filter(None) is None and parse_filter({}) is None


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"price": {"between": [1, 2]}}, "unknown operator"),
        ({"price": {"gte": "cheap"}}, "must be a number"),
        ({"tags": {"in": []}}, "non-empty list"),
        ({"brand": ["a", "b"]}, "string, number or bool"),
        ({"$or": {"a": 1}}, "non-empty list"),
        ({"$where": 1}, "not starting with"),
        ("brand = 'x'", "is a dict"),
    ],
)
def test_malformed_filters_are_named(bad, message):
    with pytest.raises(InvalidFilterError, match=message):
        parse_filter(bad)


def test_matches_evaluates_filters():
    payload = {"brand": "acme", "price": 12.5, "locale": "en", "in_stock": True}
    assert matches(parse_filter({"brand": "acme", "price": {"gt": 10, "lte": 12.5}}), payload)
    assert not matches(parse_filter({"price": {"lt": 12.5}}), payload)
    assert matches(parse_filter({"$or": [{"brand": "zen"}, {"locale": {"in": ["en"]}}]}), payload)
    assert matches(parse_filter({"in_stock": True}), payload)
    assert not matches(parse_filter({"in_stock": 1}), payload), "True is not the number 1"
    assert not matches(parse_filter({"missing": {"gte": 0}}), payload)


def test_bad_records_are_refused_whole_with_their_key():
    store = open_store("memory://protocol-bad-records")
    store.ensure_collection(SPEC)
    store.upsert([Record("keep", [1, 0, 0, 0])])
    bad_batches = {
        "nan": [Record("ok", [1, 0, 0, 0]), Record("nan", [np.nan, 0, 0, 0])],
        "short": [Record("ok", [1, 0, 0, 0]), Record("short", [1, 0, 0])],
        "inf": [Record("inf", [np.inf, 0, 0, 0])],
    }
    for key, batch in bad_batches.items():
        with pytest.raises(InvalidRecordError, match=repr(key)):
            store.upsert(batch)
    assert store.count() == 1, "nothing of a bad batch was written"


def test_an_existing_collection_with_other_settings_is_refused_before_writing():
    store = open_store("memory://protocol-mismatch")
    store.ensure_collection(SPEC)
    store.upsert([Record("a", [1, 0, 0, 0])])
    for other in (
        CollectionSpec(dimension=8, model="tiny"),
        CollectionSpec(dimension=4, distance="dot", model="tiny"),
        CollectionSpec(dimension=4, model="other-model"),
    ):
        with pytest.raises(CollectionMismatchError, match="already exists"):
            open_store("memory://protocol-mismatch").ensure_collection(other)
    assert store.count() == 1


def test_memory_store_is_exact_idempotent_and_filters():
    store = open_store("memory://protocol-exact")
    store.ensure_collection(SPEC)
    records = [Record(f"k{i}", np.eye(4)[i % 4] + i / 100, {"i": i, "even": i % 2 == 0}) for i in range(8)]
    assert store.upsert(records) == 8
    store.upsert(records)
    assert store.count() == 8 and store.count({"even": True}) == 4
    hits = store.search([1, 0, 0, 0], k=3)
    assert hits[0].key in {"k0", "k4"} and hits[0].payload["i"] in {0, 4}
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert all(h.payload["even"] for h in store.search([1, 0, 0, 0], k=8, filter={"even": True}))
    store.delete(["k0", "absent"])
    assert store.count() == 7
    assert asyncio.run(store.asearch([1, 0, 0, 0], k=2)) == store.search([1, 0, 0, 0], k=2)


def test_open_store_names_unknown_schemes():
    with pytest.raises(ValueError, match="no store adapter for 'nosuch'"):
        open_store("nosuch://x")
    with pytest.raises(ValueError, match="no scheme"):
        open_store("just-a-name")

"""Store kinds in one place (StoreKind) and the one check of a query text."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from lfm_retrieval.errors import InvalidTextError, check_query
from lfm_retrieval.stores import DenseStore, HybridStore, MultiVectorStore, open_store
from lfm_retrieval.stores.kinds import KINDS, EncodedQuery, StoreKind
from lfm_retrieval.testing.stores import exact_store, query_of, record_of, search, spec_of

KIND_NAMES = ["dense", "multivector", "hybrid"]


def test_kinds_are_the_strings_users_pass() -> None:
    assert tuple(KIND_NAMES) == KINDS
    assert [StoreKind.of(name) for name in KIND_NAMES] == list(StoreKind)
    assert StoreKind.of("hybrid") == "hybrid" and f"a {StoreKind.HYBRID} store" == "a hybrid store"
    assert str(StoreKind.MULTIVECTOR) == "multivector"


@pytest.mark.parametrize("bad", ["colbert", "Dense", "", None, 3])
def test_unknown_kind_names_the_kinds(bad: object) -> None:
    with pytest.raises(ValueError, match=r"kind must be one of dense, multivector, hybrid, not"):
        StoreKind.of(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"kind must be one of dense, multivector, hybrid"):
        open_store("memory://kinds-bad", kind=bad)  # type: ignore[arg-type]


def test_each_kind_names_its_store_class_and_encoders() -> None:
    assert StoreKind.DENSE.store_class is DenseStore and StoreKind.DENSE.encoders == ("dense",)
    assert StoreKind.MULTIVECTOR.store_class is MultiVectorStore and StoreKind.MULTIVECTOR.encoders == ("colbert",)
    assert StoreKind.HYBRID.store_class is HybridStore and StoreKind.HYBRID.encoders == ("dense", "colbert")


@pytest.mark.parametrize("name", KIND_NAMES)
def test_open_store_takes_the_member_or_the_string(name: str) -> None:
    for kind in (name, StoreKind(name)):
        store = open_store(f"memory://kinds-{name}", kind=kind)
        assert StoreKind.of(store) is StoreKind(name) and type(store.kind) is str
        assert isinstance(store, StoreKind(name).store_class)


def test_spec_parts_pair_each_part_with_its_encoder() -> None:
    dense, multivector, hybrid = (spec_of(name) for name in KIND_NAMES)
    assert StoreKind.DENSE.spec_parts(dense) == [(dense, "dense")]
    assert StoreKind.MULTIVECTOR.spec_parts(multivector) == [(multivector, "colbert")]
    assert StoreKind.HYBRID.spec_parts(hybrid) == [(hybrid.dense, "dense"), (hybrid.multivector, "colbert")]


@pytest.mark.parametrize("name", KIND_NAMES)
def test_kind_search_is_the_stores_own_search(name: str) -> None:
    rng = np.random.default_rng(7)
    records = [record_of(name, f"r{i}", rng) for i in range(20)]
    store = exact_store(name, spec_of(name), records)
    query = record_of(name, "q", rng)
    encoded = EncodedQuery(query.vector, query.token_vectors)
    expected = search(store, query_of(name, query), 5)
    kind = StoreKind(name)
    got = kind.search(store, encoded, 5, None, 100)
    assert [h.key for h in got] == [h.key for h in expected] and len(got) == 5
    assert [h.key for h in asyncio.run(kind.asearch(store, encoded, 5, None, 100))] == [h.key for h in got]
    filtered = kind.search(store, encoded, 5, {"missing": 1}, 100)
    assert filtered == []


def test_kind_search_refuses_a_store_of_another_kind() -> None:
    store = open_store("memory://kinds-other", kind="dense")
    with pytest.raises(TypeError, match="not a multivector store"):
        StoreKind.MULTIVECTOR.search(store, EncodedQuery(tokens=np.ones((2, 8), np.float32)), 1, None, 1)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (None, "query is None; expected a non-empty string"),
        (3, "query is int; expected a non-empty string"),
        (" \n", "query is empty or only whitespace; expected a non-empty string"),
    ],
)
def test_one_check_of_a_query_names_it(text: object, message: str) -> None:
    with pytest.raises(InvalidTextError, match=message):
        check_query(text)
    with pytest.raises(InvalidTextError, match=message.replace("query", r"texts\[4\]", 1)):
        check_query(text, "texts[4]")
    assert check_query("ok") == "ok"

"""Conformance suites every store adapter runs from its own test module (needs pytest).

In the manner of ``langchain-tests``: subclass the suite of the kind your store serves and
supply one fixture, ``make_store``, returning ``make(name="c")``, which opens a store of
that kind on a collection of the test's own (the same ``name`` opens the same collection
again, a new name a new one). The collection is absent until the suite creates it::

    from lfm_retrieval.testing.stores import DenseStoreSuite

    class TestMyStoreDense(DenseStoreSuite):
        @pytest.fixture
        def make_store(self, tmp_path):
            opened = []
            def make(name="c"):
                opened.append(open_store(f"mystore://{tmp_path}/{name}"))
                return opened[-1]
            yield make
            for store in opened:
                store.close()

Each suite checks what every store of its kind promises, against the exact in-memory
store and the reference filter matcher (:func:`lfm_retrieval.stores.matches`): spec
validation and refusal before writing, idempotent upsert (a repeated key: last wins),
delete, count, fingerprints, payload updates, exact payload round trips, filters
(hostile keys and values, typed equality, integers beyond 2**53), search equal to exact
search within ``min_recall``, bad vectors refusing their batch with nothing stored changed,
and the async variants. Class attributes state what a store may differ in.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest

from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError
from lfm_retrieval.stores import (
    AnySpec,
    CollectionSpec,
    Hit,
    HybridSpec,
    Record,
    Store,
    matches,
    parse_filter,
)
from lfm_retrieval.stores.memory import MemoryHybridStore, MemoryMultiVectorStore, MemoryStore

MakeStore = Callable[..., Store]
DIMENSION = 8
MODEL = "conformance-model"
INJECTION = "x'); DROP TABLE t; --"
_names = itertools.count()

# -- what each kind stores and how it is asked --------------------------------------------------


def spec_of(
    kind: str, *, dimension: int = DIMENSION, distance: str = "cosine", vector_type: str = "float32", model: str = MODEL
) -> AnySpec:
    """A collection spec of ``kind`` (a hybrid's two parts share the settings)."""
    dense = CollectionSpec(dimension, distance, vector_type, model)  # type: ignore[arg-type]
    if kind == "dense":
        return dense
    tokens = CollectionSpec(dimension, distance, vector_type, model, "multivector")  # type: ignore[arg-type]
    return tokens if kind == "multivector" else HybridSpec(dense, tokens)


def record_of(
    kind: str, key: str, rng: np.random.Generator, payload: dict[str, Any] | None = None, fingerprint: str = ""
) -> Record:
    """A record of ``kind`` with random vectors (1 to 6 token vectors for ColBERT parts)."""
    vector = rng.normal(size=DIMENSION).astype(np.float32) if kind != "multivector" else None
    tokens = rng.normal(size=(int(rng.integers(1, 7)), DIMENSION)).astype(np.float32) if kind != "dense" else None
    return Record(key, vector, dict(payload or {}), fingerprint, tokens)


def query_of(kind: str, record: Record) -> tuple[Any, ...]:
    """The positional query arguments of ``search`` that look for ``record`` itself."""
    if kind == "hybrid":
        return record.vector, record.token_vectors
    return (record.token_vectors,) if kind == "multivector" else (record.vector,)


def random_query(kind: str, rng: np.random.Generator) -> tuple[Any, ...]:
    return query_of(kind, record_of(kind, "query", rng))


def search(store: Store, query: tuple[Any, ...], k: int, filter: Any = None) -> list[Hit]:
    """``store.search`` for any kind (a hybrid prefetches every record it is asked for)."""
    options = {"prefetch": max(k, 100)} if store.kind == "hybrid" else {}
    return store.search(*query, k, filter, **options)  # type: ignore[attr-defined]


def exact_store(kind: str, spec: AnySpec, records: list[Record]) -> Store:
    """The core's exact in-memory store of ``kind`` holding ``records``: the reference."""
    cls = {"dense": MemoryStore, "multivector": MemoryMultiVectorStore, "hybrid": MemoryHybridStore}[kind]
    store = cls(f"conformance-exact-{next(_names)}")
    store.ensure_collection(spec)
    store.upsert(records)
    return store


# -- payloads that differ only in type, spelling or escaping --------------------------------------

BIG = 2**53
#: Filtered values: scalars that are equal or not only by type (True vs 1, "1" vs 1, 1 vs 1.0),
#: hostile strings, integers that floats cannot tell apart, and large integral floats stored
#: next to the equal integers (1e16 == 10**16, as in JSON and Python).
TRICKY_VALUES: list[Any] = [
    True, False, 1, 1.0, 0, 2.5, -7, "1", "true", "red", "", INJECTION, 'v"\\', "new\nline", "é",
    BIG, BIG + 1, 1234567890123456789, 2**62, 1e16, 10**16, 2.0**60, 2**60,
]  # fmt: skip
#: Field names that must stay names: SQL, JSON-path and expression syntax, dots, non-ASCII.
TRICKY_KEYS = [INJECTION, "a/b", "a.b", "a~1b", "é ü", "0"]
TRICKY_FILTERS: list[dict[str, Any]] = [
    *({"v": value} for value in TRICKY_VALUES),
    *({key: value} for key in TRICKY_KEYS for value in ("red", INJECTION)),
    {"v": {"in": [1]}},
    {"v": {"in": [True, "red"]}},
    {"v": {"in": [1, True]}},
    {"v": {"in": ["1", "true", INJECTION, 'v"\\', "new\nline"]}},
    {"v": {"in": [BIG + 1, 1234567890123456789, -7, 2.5]}},
    {"v": {"in": [1e16, 2**60, "red"]}},
    {"v": {"in": [2.0**60 + 256, 10**16 + 2]}},
    {"v": {"gte": 0}},
    {"v": {"gt": 0, "lte": 2.5}},
    {"v": {"lt": 0}},
    {"v": {"gt": 1e15}},
    {"$or": [{"v": True}, {"v": "red"}, {INJECTION: INJECTION}]},
    {"$and": [{"v": {"gte": 0}}, {"$or": [{"v": 1}, {"v": 2.5}]}]},
    {"missing": "red"},
    # negations: a record without the field (or of another type) matches them
    {"v": {"ne": 1}},
    {"v": {"ne": True}},
    {"v": {"ne": "red"}},
    {"v": {"ne": BIG + 1}},
    {"v": {"ne": 2.0**60}},
    {"v": {"nin": [10**16, 2**62]}},
    {"v": {"nin": [1, "red", INJECTION]}},
    {"v": {"nin": [True, 2.5, 1234567890123456789]}},
    {"missing": {"ne": "red"}},
    {"missing": {"nin": ["red", 1]}},
    {INJECTION: {"ne": INJECTION}},
    {"$not": {"v": {"gte": 0}}},
    {"$not": {"$or": [{"v": "red"}, {"a.b": "red"}]}},
    {"$not": {"$not": {"v": {"in": [1, "1"]}}}},
    {"v": {"ne": 1, "gt": -10}},
    {"$or": [{"v": {"nin": [1, True]}}, {"v": 1}]},
    {"$and": [{"v": {"ne": "red"}}, {"$not": {"v": {"lt": 1}}}]},
]
#: A payload every store must hand back exactly (types included).
ROUND_TRIP = {
    "price": 3.0,
    "count": 3,
    "big": 1234567890123456789,
    "flag": False,
    "nested": {"list": [1, 2.5, None, True, "x"], "deep": {"a": "b"}},
    "text": 'Ünïcödé ✓ "quoted" \\ new\nline',
    INJECTION: INJECTION,
}


def tricky_records(kind: str, rng: np.random.Generator) -> list[Record]:
    records = [record_of(kind, f"v-{i}", rng, {"v": value}) for i, value in enumerate(TRICKY_VALUES)]
    pairs = itertools.product(TRICKY_KEYS, ("red", INJECTION))
    records += [record_of(kind, f"k-{i}", rng, {key: value}) for i, (key, value) in enumerate(pairs)]
    return [*records, record_of(kind, "empty", rng)]


def bad_records(kind: str, rng: np.random.Generator) -> dict[str, Record]:
    """Records ``validate_records`` must refuse, by the message that names the problem (key ``SKU-BAD``)."""
    good = record_of(kind, "SKU-BAD", rng)
    vector, tokens = good.vector, good.token_vectors
    cases: dict[str, Record] = {
        "payload is not JSON": Record("SKU-BAD", vector, {"when": object()}, "", tokens),
        "not a finite number": Record("SKU-BAD", vector, {"x": float("nan")}, "", tokens),
        "not a string": Record("SKU-BAD", vector, {1: "int key"}, "", tokens),  # type: ignore[dict-item]
    }
    if kind != "multivector":
        cases |= {
            "NaN": Record("SKU-BAD", np.full(DIMENSION, np.nan), {}, "", tokens),
            "expected \\(8,\\)": Record("SKU-BAD", np.ones(DIMENSION - 1), {}, "", tokens),
            "shape \\(9,\\)": Record("SKU-BAD", np.ones(DIMENSION + 1), {}, "", tokens),
        }
    if kind != "dense":
        cases |= {
            "zero token vectors": Record("SKU-BAD", vector, {}, "", np.zeros((0, DIMENSION), np.float32)),
            "expected \\(tokens, 8\\)": Record("SKU-BAD", vector, {}, "", np.ones((3, DIMENSION - 1))),
            "not one rectangular array": Record("SKU-BAD", vector, {}, "", [[0.1] * DIMENSION, [0.1] * 3]),
            "contain NaN": Record("SKU-BAD", vector, {}, "", [[float("nan")] * DIMENSION]),
            "no token_vectors": Record("SKU-BAD", vector, {}, "", None),
        }
    if kind == "dense":
        cases["token vectors were given to a dense collection"] = Record("SKU-BAD", vector, {}, "", np.ones((2, 8)))
    if kind == "multivector":
        cases["dense vector was given"] = Record("SKU-BAD", np.ones(DIMENSION), {}, "", tokens)
    if kind == "hybrid":
        cases["no vector given"] = Record("SKU-BAD", None, {}, "", tokens)
    return cases


class StoreSuite:
    """What every store promises, whatever its kind; subclass a kind's suite, not this one."""

    kind: ClassVar[str]
    #: Distances the store serves (exact search is compared for each).
    distances: ClassVar[tuple[str, ...]] = ("cosine", "dot", "euclid")
    #: Whether the store can hold float16 collections (the float16 range is checked on one).
    float16: ClassVar[bool] = True
    #: Share of exact search's top 10 the store must find (1.0: all of them).
    min_recall: ClassVar[float] = 1.0
    #: Largest difference from exact search's score for a hit both return.
    score_tolerance: ClassVar[float] = 1e-4

    @pytest.fixture
    def make_store(self) -> MakeStore:
        """Override: ``make(name="c")`` opening a store of ``kind`` on the test's own collection ``name``."""
        raise NotImplementedError("a conformance suite needs a make_store fixture (see lfm_retrieval.testing.stores)")

    @pytest.fixture
    def rng(self) -> np.random.Generator:
        return np.random.default_rng(20261129)

    def _filled(self, make_store: MakeStore, records: list[Record], name: str = "c", **spec: Any) -> Store:
        store = make_store(name)
        store.ensure_collection(spec_of(self.kind, **spec))
        assert store.upsert(records) == len(records)
        return store

    # -- the collection's spec ------------------------------------------------------------------
    def test_a_spec_of_another_kind_is_refused_before_anything_is_created(self, make_store: MakeStore) -> None:
        store = make_store()
        for other in ("dense", "multivector", "hybrid"):
            if other != self.kind:
                with pytest.raises(CollectionMismatchError, match=f"stores {self.kind} collections"):
                    store.ensure_collection(spec_of(other))
        with pytest.raises(LookupError, match="does not exist"):
            store.collection_spec()

    def test_an_existing_collection_with_other_settings_is_refused_before_writing(
        self, make_store: MakeStore, rng: np.random.Generator
    ) -> None:
        kept = record_of(self.kind, "kept", rng, {"v": 1}, "fp")
        store = self._filled(make_store, [kept], "mismatch")
        store.ensure_collection(spec_of(self.kind))  # the same spec again: fine
        others = {
            "dimension": spec_of(self.kind, dimension=DIMENSION * 2),
            "distance": spec_of(self.kind, distance="dot"),
            "model": spec_of(self.kind, model="another-model"),
        }
        for setting, other in others.items():
            with pytest.raises(CollectionMismatchError, match=setting):
                make_store("mismatch").ensure_collection(other)
        reopened = make_store("mismatch")
        assert reopened.collection_spec() == spec_of(self.kind), "the spec is read back from the collection"
        assert reopened.count() == 1 and reopened.fingerprints() == {"kept": "fp"}

    # -- writes ----------------------------------------------------------------------------------
    def test_upsert_is_idempotent_and_a_repeated_key_keeps_its_last_record(
        self, make_store: MakeStore, rng: np.random.Generator
    ) -> None:
        records = [record_of(self.kind, f"SKU-{i}/en", rng, {"i": i}, f"f{i}") for i in range(12)]
        store = self._filled(make_store, records)
        assert store.upsert(records) == len(records) and store.count() == 12
        changed = record_of(self.kind, "SKU-5/en", rng, {"i": 500}, "f5b")
        store.upsert([record_of(self.kind, "SKU-5/en", rng, {"i": -1}), records[6], changed])
        assert store.count() == 12
        top = search(store, query_of(self.kind, changed), 1)[0]
        assert (top.key, top.id, top.payload) == (changed.key, changed.id, {"i": 500})
        assert store.fingerprints()["SKU-5/en"] == "f5b"
        other = search(store, query_of(self.kind, records[7]), 1)[0]
        assert (other.key, other.payload) == (records[7].key, {"i": 7}), "the others are untouched"

    def test_delete_and_count_with_a_filter(self, make_store: MakeStore, rng: np.random.Generator) -> None:
        records = [record_of(self.kind, f"k{i}", rng, {"colour": ["red", "green", "blue"][i % 3]}) for i in range(12)]
        store = self._filled(make_store, records)
        assert store.count({"colour": "red"}) == 4
        store.delete([records[0].key, records[1].key, "never-stored"])
        store.delete([])
        assert store.count() == 10 and store.count({"colour": "red"}) == 3
        assert records[0].key not in {h.key for h in search(store, query_of(self.kind, records[0]), 10)}
        assert set(store.fingerprints()) == {r.key for r in records[2:]}

    def test_payload_updates_keep_the_vectors_and_ignore_unknown_keys(
        self, make_store: MakeStore, rng: np.random.Generator
    ) -> None:
        records = [record_of(self.kind, f"r{i}", rng, {"i": i}, f"fp{i}") for i in range(3)]
        store = self._filled(make_store, records)
        assert store.update_payloads([("r1", {"i": 10, "new": "yes"}, "fp1b"), ("never-stored", {}, "x")]) == 1
        assert store.fingerprints() == {"r0": "fp0", "r1": "fp1b", "r2": "fp2"} and store.count() == 3
        own = search(store, query_of(self.kind, records[1]), 1)[0]
        exact = search(exact_store(self.kind, spec_of(self.kind), records), query_of(self.kind, records[1]), 1)[0]
        assert (own.key, own.payload) == ("r1", {"i": 10, "new": "yes"})
        assert own.score == pytest.approx(exact.score, abs=self.score_tolerance), "the vectors were kept"
        for bad in ({"x": float("inf")}, {"x": object()}):
            with pytest.raises(InvalidRecordError, match="r2"):
                store.update_payloads([("r0", {"ok": 1}, "fp0c"), ("r2", bad, "fp")])
        assert store.fingerprints() == {"r0": "fp0", "r1": "fp1b", "r2": "fp2"}, "nothing of a bad update was written"

    def test_fingerprints_of_given_keys_only_and_only_stored_ones(
        self, make_store: MakeStore, rng: np.random.Generator
    ) -> None:
        records = [record_of(self.kind, f"k{i}", rng, {"i": i}, f"fp{i}") for i in range(30)]
        store = self._filled(make_store, records)
        assert store.fingerprints(["k3", "k17", "absent", "k3"]) == {"k3": "fp3", "k17": "fp17"}
        assert store.fingerprints([]) == {}
        assert store.fingerprints(f"k{i}" for i in range(0, 30, 2)) == {f"k{i}": f"fp{i}" for i in range(0, 30, 2)}
        assert store.fingerprints() == {f"k{i}": f"fp{i}" for i in range(30)}
        store.update_payloads([("k5", {"i": 5}, "fp5b")])
        store.delete(["k6"])
        assert store.fingerprints(["k5", "k6"]) == {"k5": "fp5b"}

    def test_payloads_come_back_exactly(self, make_store: MakeStore, rng: np.random.Generator) -> None:
        records = [record_of(self.kind, "SKU-1/en", rng, ROUND_TRIP, "fp-1"), record_of(self.kind, "SKU-2/en", rng)]
        store = self._filled(make_store, records)
        hit = search(store, query_of(self.kind, records[0]), 1)[0]
        assert (hit.key, hit.id, hit.payload) == ("SKU-1/en", records[0].id, ROUND_TRIP)
        assert isinstance(hit.payload["price"], float) and isinstance(hit.payload["count"], int)
        assert search(store, query_of(self.kind, records[1]), 1)[0].payload == {}
        assert store.fingerprints() == {"SKU-1/en": "fp-1", "SKU-2/en": ""}

    # -- bad input -------------------------------------------------------------------------------
    def test_a_bad_record_refuses_its_batch_and_nothing_stored_changes(
        self, make_store: MakeStore, rng: np.random.Generator
    ) -> None:
        kept = record_of(self.kind, "kept", rng, {"v": 1}, "fp")
        store = self._filled(make_store, [kept])
        for problem, bad in bad_records(self.kind, rng).items():
            fine = record_of(self.kind, "fine", rng, {"v": 2}, "new")
            with pytest.raises(InvalidRecordError, match=problem) as caught:
                store.upsert([fine, bad])
            assert "SKU-BAD" in str(caught.value), problem
            assert store.count() == 1 and store.fingerprints() == {"kept": "fp"}, f"{problem}: nothing was written"
        assert search(store, query_of(self.kind, kept), 1)[0].payload == {"v": 1}

    def test_values_beyond_float16_refuse_their_batch(self, make_store: MakeStore, rng: np.random.Generator) -> None:
        if not self.float16:
            pytest.skip(f"{type(self).__name__} states it holds no float16 collections")
        kept = record_of(self.kind, "kept", rng)
        store = self._filled(make_store, [kept], vector_type="float16")
        bad = record_of(self.kind, "SKU-BAD", rng)
        if bad.token_vectors is not None:
            bad.token_vectors[0, 0] = 7e4
        else:
            bad.vector[0] = -7e4  # type: ignore[index]
        with pytest.raises(InvalidRecordError, match=r"SKU-BAD.*float16"):
            store.upsert([record_of(self.kind, "fine", rng), bad])
        assert store.count() == 1

    # -- filters ---------------------------------------------------------------------------------
    def test_filters_agree_with_the_reference_matcher(self, make_store: MakeStore, rng: np.random.Generator) -> None:
        records = tricky_records(self.kind, rng)
        store = self._filled(make_store, records)
        by_key = {r.key: r for r in records}
        query = random_query(self.kind, rng)
        for spec in TRICKY_FILTERS:
            expected = {r.key for r in records if matches(parse_filter(spec), r.payload)}
            found = search(store, query, len(records), spec)
            assert {hit.key for hit in found} == expected, spec
            assert all(hit.payload == by_key[hit.key].payload for hit in found), spec
            assert store.count(spec) == len(expected), spec
        assert store.count() == len(records), "nothing was dropped"

    # -- search ----------------------------------------------------------------------------------
    @pytest.mark.parametrize("distance", ["cosine", "dot", "euclid"])
    def test_search_equals_exact_search(self, make_store: MakeStore, rng: np.random.Generator, distance: str) -> None:
        if distance not in self.distances or (distance == "euclid" and self.kind != "dense"):
            pytest.skip(f"{type(self).__name__} serves no {distance} {self.kind} collections")
        records = [record_of(self.kind, f"k{i}", rng, {"group": ["a", "b"][i % 2]}) for i in range(60)]
        store = self._filled(make_store, records, distance, distance=distance)
        exact = exact_store(self.kind, spec_of(self.kind, distance=distance), records)
        for _ in range(4):
            query = random_query(self.kind, rng)
            for flt in (None, {"group": "b"}):
                expected = search(exact, query, 10, flt)
                hits = search(store, query, 10, flt)
                found = {h.key for h in hits} & {h.key for h in expected}
                assert len(found) >= self.min_recall * len(expected), (distance, flt)
                assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True), "best first"
                scores = {h.key: h.score for h in expected}
                for hit in hits:
                    if hit.key in scores:
                        assert hit.score == pytest.approx(scores[hit.key], abs=self.score_tolerance), hit.key
        with pytest.raises(ValueError, match="k must be a positive int"):
            search(store, random_query(self.kind, rng), 0)

    def test_async_variants_equal_the_sync_ones(self, make_store: MakeStore, rng: np.random.Generator) -> None:
        records = [record_of(self.kind, f"k{i}", rng, {"i": i}) for i in range(10)]
        store = make_store()
        store.ensure_collection(spec_of(self.kind))
        assert asyncio.run(store.aupsert(records)) == 10
        assert store.count() == 10
        query = query_of(self.kind, records[3])
        options = {"prefetch": 10} if self.kind == "hybrid" else {}
        found = asyncio.run(store.asearch(*query, 5, {"i": {"gte": 2}}, **options))  # type: ignore[attr-defined]
        assert [h.key for h in found] == [h.key for h in search(store, query, 5, {"i": {"gte": 2}})]
        assert found[0].key == "k3"


class DenseStoreSuite(StoreSuite):
    """The contract of a :class:`~lfm_retrieval.stores.DenseStore`."""

    kind = "dense"


class MultiVectorStoreSuite(StoreSuite):
    """The contract of a :class:`~lfm_retrieval.stores.MultiVectorStore` (MaxSim)."""

    kind = "multivector"
    distances = ("cosine", "dot")


class HybridStoreSuite(StoreSuite):
    """The contract of a :class:`~lfm_retrieval.stores.HybridStore` (dense prefetch, MaxSim rerank)."""

    kind = "hybrid"
    distances = ("cosine", "dot")


def unique_name(prefix: str = "c") -> str:
    """A collection name no other test of this process uses (letters, digits, underscores)."""
    return f"{prefix}_{next(_names)}"

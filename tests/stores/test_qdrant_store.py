"""The Qdrant adapter beyond the conformance suite: its local mode against Qdrant's real engine
(qdrant-edge-py, in-process), float16 collections, shared local folders, the payload and
spec layout, filters on the real engine, URIs and errors. Real data: the MiniLM model and
the construction-law FAQ."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np
import pytest

lfm_qdrant = pytest.importorskip("lfm_retrieval_qdrant")

from qdrant_client import QdrantClient, models  # noqa: E402

from lfm_retrieval import DenseEncoder  # noqa: E402
from lfm_retrieval.errors import (  # noqa: E402
    CollectionMismatchError,
    InvalidFilterError,
    StoreUnavailableError,
)
from lfm_retrieval.stores import CollectionSpec, Record, Store, matches, open_store, parse_filter  # noqa: E402
from lfm_retrieval.testing.stores import (  # noqa: E402
    DenseStoreSuite,
    HybridStoreSuite,
    MultiVectorStoreSuite,
    unique_name,
)
from lfm_retrieval_qdrant import QdrantCollection, QdrantDenseStore, parse_uri  # noqa: E402
from lfm_retrieval_qdrant.filters import to_filter  # noqa: E402
from lfm_retrieval_qdrant.layout import FINGERPRINT_FIELD, KEY_FIELD, PAYLOAD_FIELD, point_payload  # noqa: E402
from stores.qdrant_engine import edge_filter  # noqa: E402

INJECTION = "x'); DROP TABLE t; --"
N_DOCS = 120


# -- the conformance suites: local mode, and a server when LFM_TEST_QDRANT_URL names one -----------


class QdrantFixture:
    """``make_store`` for every Qdrant mode; a mode is a base URI (``{base}/{collection}``)."""

    kind: str
    mode: str
    #: Store options every store of the class is opened with.
    options: ClassVar[dict[str, Any]] = {}

    @pytest.fixture
    def base_uri(self, tmp_path: Path, request: pytest.FixtureRequest) -> str:
        if self.mode == "edge":
            pytest.importorskip("qdrant_edge")
            return f"qdrant+edge://{tmp_path / 'qdrant-edge'}"
        if self.mode == "local":
            return f"qdrant+local://{tmp_path / 'qdrant'}"
        url = request.getfixturevalue("qdrant_url")
        if not url:
            pytest.skip("no Qdrant server here: set LFM_TEST_QDRANT_URL (see docker/)")
        return f"qdrant://{urlsplit(url).netloc}"

    @pytest.fixture
    def make_store(self, base_uri: str) -> Iterator[Callable[..., Store]]:
        names: dict[str, str] = {}
        opened: list[QdrantCollection] = []

        def make(name: str = "c") -> Store:
            names.setdefault(name, unique_name(f"conf_{name}"))
            opened.append(open_store(f"{base_uri}/{names[name]}", kind=self.kind, **self.options))
            return opened[-1]

        yield make
        for store in opened:
            if (
                self.mode == "server"
                and store._handle is not None
                and store.client.collection_exists(store.collection_name)
            ):
                store.client.delete_collection(store.collection_name)
            store.close()


class TestQdrantLocalDense(QdrantFixture, DenseStoreSuite):
    mode = "local"


class TestQdrantLocalMultiVector(QdrantFixture, MultiVectorStoreSuite):
    mode = "local"
    options: ClassVar[dict[str, Any]] = {"first_stage": "none"}  # exact MaxSim (test_qdrant_first_stage.py: with one)


class TestQdrantLocalHybrid(QdrantFixture, HybridStoreSuite):
    mode = "local"


class TestQdrantEdgeDense(QdrantFixture, DenseStoreSuite):
    mode = "edge"


class TestQdrantEdgeMultiVector(QdrantFixture, MultiVectorStoreSuite):
    mode = "edge"
    options: ClassVar[dict[str, Any]] = {"first_stage": "none"}  # exact MaxSim (test_qdrant_first_stage.py: with one)


class TestQdrantEdgeHybrid(QdrantFixture, HybridStoreSuite):
    mode = "edge"


class TestQdrantServerDense(QdrantFixture, DenseStoreSuite):
    mode = "server"


class TestQdrantServerMultiVector(QdrantFixture, MultiVectorStoreSuite):
    mode = "server"
    options: ClassVar[dict[str, Any]] = {"first_stage": "none"}  # exact MaxSim (test_qdrant_first_stage.py: with one)


class TestQdrantServerHybrid(QdrantFixture, HybridStoreSuite):
    mode = "server"


# -- real data --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def faq(minilm_path):
    """The first FAQ answers as documents (MiniLM, document side) and some questions as queries."""
    zaragoza = pytest.importorskip("zaragoza_construction_faq")
    items = zaragoza.load(lang="en")[:N_DOCS]
    encoder = DenseEncoder(str(minilm_path), device="cpu")
    documents = encoder.encode_documents([item["a"] for item in items])
    queries = encoder.encode_queries([item["q"] for item in items[::10]])
    records = [
        Record(
            item["id"],
            vector,
            {"category": item["category"], "n": i, "length": float(len(item["a"])), "sources": item["sources"]},
        )
        for i, (item, vector) in enumerate(zip(items, documents, strict=True))
    ]
    return CollectionSpec.for_encoder(encoder), records, queries


def local_store(folder: Path, name: str, **options) -> QdrantDenseStore:
    store = open_store(f"qdrant+local://{folder}/{name}", **options)
    assert isinstance(store, QdrantDenseStore)
    return store


# -- Qdrant's real engine (qdrant-edge-py) ------------------------------------------------------


def qdrant_edge_reads_true_as_one() -> bool:
    """The binding quirk the filter test works around; when it is fixed, test bools on the engine too."""
    import qdrant_edge as qe

    return qe.MatchValue(True).value == 1 and not isinstance(qe.MatchValue(True).value, bool)


def mentions_bool(spec) -> bool:
    if isinstance(spec, bool):
        return True
    if isinstance(spec, dict):
        return any(mentions_bool(v) for v in spec.values())
    if isinstance(spec, (list, tuple)):
        return any(mentions_bool(v) for v in spec)
    return False


class EngineShard:
    """The adapter's points written into a qdrant-edge shard, queried through its own API."""

    def __init__(self, path: Path, spec: CollectionSpec, records: list[Record], *, index: dict | None = None):
        import qdrant_edge as qe

        self.qe = qe
        self.spec = spec
        distance = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}[spec.distance]
        datatype = qe.VectorStorageDatatype.Float16 if spec.vector_type == "float16" else None
        params = qe.EdgeVectorParams(size=spec.dimension, distance=distance, datatype=datatype)
        self.shard = qe.EdgeShard.create(str(path), qe.EdgeConfig(vectors=params))
        points = [
            qe.Point(r.id, np.asarray(r.vector, dtype=np.float32).tolist(), point_payload(r.key, r.payload))
            for r in records
        ]
        self.shard.update(qe.UpdateOperation.upsert_points(points))
        for path_, schema in (index or {}).items():
            self.shard.update(qe.UpdateOperation.create_field_index(path_, schema))
        self.shard.optimize()

    def search(self, vector: np.ndarray, k: int, flt: dict | None = None) -> list[tuple[str, float]]:
        request = self.qe.QueryRequest(
            limit=k,
            query=self.qe.Query.Nearest(np.asarray(vector, dtype=np.float32).tolist()),
            filter=edge_filter(to_filter(parse_filter(flt))),
            with_payload=True,
        )
        sign = -1.0 if self.spec.distance == "euclid" else 1.0
        return [(str(p.id), sign * p.score) for p in self.shard.query(request)]

    def keys(self, flt: dict) -> set[str]:
        request = self.qe.ScrollRequest(
            limit=10_000, filter=edge_filter(to_filter(parse_filter(flt))), with_payload=True
        )
        points, _ = self.shard.scroll(request)
        return {p.payload[KEY_FIELD] for p in points}

    def count(self, flt: dict) -> int:
        return self.shard.count(self.qe.CountRequest(exact=True, filter=edge_filter(to_filter(parse_filter(flt)))))

    def close(self) -> None:
        self.shard.close()


def assert_same_results(adapter_hits, engine_hits, tolerance: float) -> None:
    assert [h.id for h in adapter_hits] == [point_id for point_id, _ in engine_hits]
    np.testing.assert_allclose([h.score for h in adapter_hits], [s for _, s in engine_hits], atol=tolerance, rtol=0)


FAQ_FILTERS = [
    {"category": {"in": ["bygglov", "kontrakt", "rot-avdrag", "dolda-fel"]}, "n": {"lt": 100}},
    {"$or": [{"category": "bygglov"}, {"length": {"gte": 400.0}}]},
]


def test_local_mode_returns_what_qdrants_engine_returns(faq, tmp_path):
    """Same ids, same order, same scores (1e-4) from the adapter in local mode and from qdrant-edge."""
    qe = pytest.importorskip("qdrant_edge")
    spec, records, queries = faq
    store = local_store(tmp_path / "local", "faq")
    store.ensure_collection(spec)
    store.upsert(records)
    index = {  # as payload_indexes would make them on a server
        f'{PAYLOAD_FIELD}."category"': qe.PayloadSchemaType.Keyword,
        f'{PAYLOAD_FIELD}."length"': qe.PayloadSchemaType.Float,
    }
    engine = EngineShard(tmp_path / "edge", spec, records, index=index)
    try:
        for query in queries:
            assert_same_results(store.search(query, k=10), engine.search(query, 10), 1e-4)
            for flt in FAQ_FILTERS:
                hits = store.search(query, k=10, filter=flt)
                assert hits and all(matches(parse_filter(flt), h.payload) for h in hits)
                assert_same_results(hits, engine.search(query, 10, flt), 1e-4)
    finally:
        engine.close()
        store.close()


def test_the_filter_translation_means_the_same_on_qdrants_engine(tmp_path):
    """Every filter form selects exactly what the portable semantics select, on the real engine
    (with payload indexes, as on a server) and in local mode: ints and floats, bools, hostile input.

    Bool equality is checked in local mode only: qdrant-edge-py's ``MatchValue(True)`` becomes
    ``MatchValue(1)`` in its Python binding, so the engine cannot be asked for it from Python
    (qdrant-client sends a JSON ``true`` to a server)."""
    assert qdrant_edge_reads_true_as_one()
    qe = pytest.importorskip("qdrant_edge")
    rng = np.random.default_rng(3)
    spec = CollectionSpec(dimension=8, model="unit-test-model")
    records = [
        Record(
            f"r{i}",
            rng.normal(size=8).astype(np.float32),
            {
                "price": float(i) if i % 2 else i,  # ints and floats of the same values
                "flag": i % 3 == 0,
                "colour": ["red", "green", "blue"][i % 3],
                "one": 1 if i % 4 == 0 else True,  # 1 and True are different values
                INJECTION: INJECTION if i == 7 else "safe",
                "dotted.name": i % 5,
            },
        )
        for i in range(30)
    ]
    filters = [
        {"price": 3},
        {"price": 4.0},
        {"price": 2.5},
        {"flag": True},
        {"one": 1},
        {"one": True},
        {"price": {"in": [1, 2.0, 9, "x"]}},
        {"colour": {"in": ["red", INJECTION]}},
        {"colour": INJECTION},
        {INJECTION: INJECTION},
        {INJECTION: "red"},
        {"dotted.name": 2},
        {"price": {"gt": 3, "lte": 11.5}, "colour": {"in": ["red", "blue"]}},
        {"$or": [{"colour": "green"}, {"$and": [{"flag": True}, {"price": {"lt": 10}}]}]},
        {"$or": [{"colour": "green"}, {"$and": [{"one": 1}, {"price": {"lt": 10}}]}]},
    ]
    index = {
        f'{PAYLOAD_FIELD}."colour"': qe.PayloadSchemaType.Keyword,
        f'{PAYLOAD_FIELD}."price"': qe.PayloadSchemaType.Float,
    }
    engine = EngineShard(tmp_path / "edge", spec, records, index=index)
    store = local_store(tmp_path / "local", "filters")
    store.ensure_collection(spec)
    store.upsert(records)
    try:
        for flt in filters:
            expected = {r.key for r in records if matches(parse_filter(flt), r.payload)}
            if not mentions_bool(flt):  # qdrant-edge-py 0.9 reads MatchValue(True) as the integer 1
                assert engine.keys(flt) == expected, flt
                assert engine.count(flt) == len(expected), flt
            assert {h.key for h in store.search(rng.normal(size=8), k=30, filter=flt)} == expected, flt
    finally:
        engine.close()
        store.close()


LARGE_NUMBERS = [
    1e16, 10**16, 10**16 + 1, 2.0**60, 2**60, 2**60 + 1, 2**60 - 1, 2**53, 2**53 + 1, 2.0**53,
    2**62, 2.0**63, 2**63 - 1, -(2.0**60), -(2**60) - 1, 3, 3.0,
]  # fmt: skip


@pytest.mark.parametrize("index", [None, "float"], ids=["scan", "float-index"])
def test_a_large_number_matches_whether_stored_as_int_or_float(tmp_path, index):
    """``1e16`` equals ``10**16`` (as in JSON and Python), on Qdrant's engine (the server path's
    translation and the ``qdrant+edge`` store) and in local mode, while the integers that round to
    the same float (``2**60 + 1`` to ``2.0**60``) stay apart."""
    pytest.importorskip("qdrant_edge")
    rng = np.random.default_rng(5)
    spec = CollectionSpec(dimension=8, model="unit-test-model")
    records = [Record(f"n{i}", rng.normal(size=8).astype(np.float32), {"v": v}) for i, v in enumerate(LARGE_NUMBERS)]
    filters = [
        *({"v": v} for v in LARGE_NUMBERS),
        {"v": 2**60 + 255},  # no float and no record equals it
        {"v": 2**64},  # beyond int64: only a float payload could equal it
        {"v": {"in": [1e16, 2**60 + 1, 2.0**63]}},
        {"v": {"in": [2**64 + 1, 2**63]}},
        {"v": {"ne": 2.0**60}},
        {"v": {"nin": [10**16, 2**53]}},
    ]
    qe = pytest.importorskip("qdrant_edge")
    engine_index = {f'{PAYLOAD_FIELD}."v"': qe.PayloadSchemaType.Float} if index else None
    engine = EngineShard(tmp_path / "engine", spec, records, index=engine_index)
    edge = open_store(f"qdrant+edge://{tmp_path}/edge/numbers", payload_indexes={"v": index} if index else None)
    local = local_store(tmp_path / "local", "numbers")
    try:
        for store in (edge, local):
            store.ensure_collection(spec)
            store.upsert(records)
        for flt in filters:
            expected = {r.key for r in records if matches(parse_filter(flt), r.payload)}
            assert engine.keys(flt) == expected, flt
            for store in (edge, local):
                assert {h.key for h in store.search(rng.normal(size=8), k=len(records), filter=flt)} == expected, flt
                assert store.count(flt) == len(expected), flt
        assert {r.key for r in records if matches(parse_filter({"v": 10**16}), r.payload)} == {"n0", "n1"}
    finally:
        engine.close()
        edge.close()
        local.close()


# -- float16 ------------------------------------------------------------------------------------


def test_a_float16_collection_round_trips_and_scores_like_the_engine(faq, tmp_path):
    pytest.importorskip("qdrant_edge")
    dense, records, queries = faq
    spec = CollectionSpec(dimension=dense.dimension, distance="dot", vector_type="float16", model=dense.model)
    store = local_store(tmp_path / "local", "half")
    store.ensure_collection(spec)
    config = store.client.get_collection("half").config
    assert config.params.vectors.datatype == models.Datatype.FLOAT16
    assert config.metadata["lfm_retrieval"]["vector_type"] == "float16"
    store.upsert(records)

    stored = store.client.retrieve("half", [r.id for r in records[:5]], with_vectors=True)
    by_id = {str(p.id): np.asarray(p.vector, dtype=np.float32) for p in stored}
    for record in records[:5]:
        half = np.asarray(record.vector, dtype=np.float32).astype(np.float16).astype(np.float32)
        np.testing.assert_array_equal(by_id[record.id], half)
    top = store.search(records[0].vector, k=1)[0]
    assert top.key == records[0].key and top.payload == records[0].payload

    engine = EngineShard(tmp_path / "edge", spec, records)
    assert engine.shard.info().points_count == len(records)
    try:
        for query in queries:
            assert_same_results(store.search(query, k=10), engine.search(query, 10), 1e-4)
    finally:
        engine.close()
    store.close()

    with (
        local_store(tmp_path / "local", "half") as reopened,
        pytest.raises(CollectionMismatchError, match="vector_type"),
    ):
        reopened.ensure_collection(CollectionSpec(dense.dimension, "dot", "float32", dense.model))


# -- local folders ------------------------------------------------------------------------------


def test_stores_on_one_local_folder_share_its_client(tmp_path):
    rng = np.random.default_rng(5)
    spec = CollectionSpec(dimension=4, model="m")
    first, second, again = (local_store(tmp_path, n) for n in ("first", "second", "first"))
    assert first.client is second.client is again.client
    for store, n in ((first, 3), (second, 5)):
        store.ensure_collection(spec)
        store.upsert([Record(f"k{i}", rng.normal(size=4), {"i": i}) for i in range(n)])
    again.ensure_collection(spec)
    assert (first.count(), second.count(), again.count()) == (3, 5, 3)
    first.close()
    first.close()  # closing twice is harmless
    assert second.count() == 5 and again.count() == 3, "the others still work"
    with pytest.raises(RuntimeError, match="closed"):
        first.count()
    second.close()
    again.close()
    # the last close released the folder: another client (here: another process) can open it
    code = f"from qdrant_client import QdrantClient; print(QdrantClient(path={str(tmp_path)!r}).count('second').count)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.split()[-1] == "5"


def test_a_folder_another_process_holds_is_named(tmp_path):
    with local_store(tmp_path, "held") as store:
        store.ensure_collection(CollectionSpec(dimension=2))
        code = (
            "from lfm_retrieval.stores import open_store\n"
            "from lfm_retrieval.errors import StoreUnavailableError\n"
            "try:\n"
            f"    open_store('qdrant+local://{tmp_path}/held')\n"
            "except StoreUnavailableError as error:\n"
            "    print(error)\n"
        )
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120).stdout
        assert "in use by another process" in out and str(tmp_path) in out


def test_local_data_and_spec_survive_reopening(tmp_path):
    rng = np.random.default_rng(6)
    spec = CollectionSpec(dimension=4, distance="euclid", model="m")
    with local_store(tmp_path, "kept") as store:
        store.ensure_collection(spec)
        store.upsert([Record(f"k{i}", rng.normal(size=4), {"i": i}) for i in range(4)])
    with local_store(tmp_path, "kept") as store:
        assert store.spec is None
        assert store.count() == 4 and store.spec == spec, "the spec is read back from the collection"
        assert store.search(np.zeros(4), k=1)[0].score <= 0, "euclid: the negated distance"
        for other in (CollectionSpec(4, "euclid", model="other"), CollectionSpec(4, "cosine", model="m")):
            with pytest.raises(CollectionMismatchError, match="already exists"):
                store.ensure_collection(other)
        assert store.count() == 4


def test_the_in_memory_local_mode(tmp_path):
    with open_store("qdrant+local://:memory:/scratch") as store:
        store.ensure_collection(CollectionSpec(dimension=3))
        store.upsert([Record("a", [1.0, 0.0, 0.0])])
        assert store.search([1.0, 0.0, 0.0], k=1)[0].key == "a"


# -- layout: keys, payloads, fingerprints, spec -------------------------------------------------


def test_payloads_come_back_exactly_and_internal_fields_never_collide(tmp_path):
    spec = CollectionSpec(dimension=3, model="m")
    payload = {
        KEY_FIELD: "a user field with the store's name",
        PAYLOAD_FIELD: {"nested": [1, 2.5, None, True]},
        FINGERPRINT_FIELD: 0,
        "price": 3.0,
        "count": 3,
        "empty": {},
        "text": "Ünïcödé ✓",
    }
    with local_store(tmp_path, "layout") as store:
        store.ensure_collection(spec)
        store.upsert([Record("SKU-1/en", [1.0, 0.0, 0.0], payload, fingerprint="fp-1"), Record("SKU-2/en", [0, 1, 0])])
        hit = store.search([1.0, 0.0, 0.0], k=1)[0]
        assert (hit.key, hit.payload) == ("SKU-1/en", payload)
        assert isinstance(hit.payload["price"], float) and isinstance(hit.payload["count"], int)
        assert store.search([0, 1, 0], k=1)[0].payload == {}
        assert store.count({KEY_FIELD: "a user field with the store's name"}) == 1, "user fields filter as written"
        assert store.fingerprints() == {"SKU-1/en": "fp-1", "SKU-2/en": ""}
        raw = store.client.retrieve("layout", [hit.id], with_payload=True)[0].payload
        assert raw == {KEY_FIELD: "SKU-1/en", FINGERPRINT_FIELD: "fp-1", PAYLOAD_FIELD: payload}
        assert store.client.get_collection("layout").config.metadata == {
            "lfm_retrieval": {
                "kind": "dense",
                "dimension": 3,
                "distance": "cosine",
                "vector_type": "float32",
                "model": "m",
                "layout": 1,
            }
        }


def test_a_collection_not_made_by_this_package_is_refused(tmp_path):
    client = QdrantClient(path=str(tmp_path / "foreign"))
    client.create_collection("theirs", vectors_config=models.VectorParams(size=4, distance=models.Distance.COSINE))
    client.upsert("theirs", points=[models.PointStruct(id=1, vector=[1.0, 0, 0, 0], payload={"a": 1})])
    client.close()
    with local_store(tmp_path / "foreign", "theirs") as store:
        with pytest.raises(CollectionMismatchError, match="no lfm-retrieval spec"):
            store.ensure_collection(CollectionSpec(dimension=4))
        assert store.client.count("theirs").count == 1


def test_a_field_name_qdrant_cannot_address_is_a_clear_filter_error(tmp_path):
    with local_store(tmp_path, "quote") as store:
        store.ensure_collection(CollectionSpec(dimension=2))
        store.upsert([Record("a", [1.0, 0.0], {"ok": 1})])
        with pytest.raises(InvalidFilterError, match="contains"):
            store.search([1.0, 0.0], k=1, filter={'we"ird': 1})
        assert store.count() == 1


# -- options, URIs, servers ---------------------------------------------------------------------


def test_payload_indexes_are_checked_and_ignored_in_local_mode(tmp_path):
    with pytest.raises(ValueError, match="schema"):
        local_store(tmp_path, "idx", payload_indexes={"colour": "colour"})
    with local_store(tmp_path, "idx", payload_indexes={"colour": "keyword", "price": "float"}) as store:
        store.ensure_collection(CollectionSpec(dimension=2))
        store.upsert([Record("a", [1.0, 0.0], {"colour": "red", "price": 2.0})])
        assert store.count({"colour": "red", "price": {"lt": 3}}) == 1
        assert store.client.get_collection("idx").payload_schema == {}


def test_uris(tmp_path):
    local = parse_uri(f"qdrant+local://{tmp_path}/products")
    assert (local.folder, local.collection, local.is_local) == (str(tmp_path.resolve()), "products", True)
    relative = parse_uri("qdrant+local://./lfm-index/products")
    assert relative.folder == str(Path("lfm-index").resolve()) and relative.collection == "products"
    server = parse_uri("qdrant://db.example:6400/products")
    assert (server.host, server.port, server.https, server.collection) == ("db.example", 6400, False, "products")
    secure = parse_uri("qdrant+https://db.example/products")
    assert (secure.port, secure.https, secure.where) == (6333, True, "https://db.example:6333")
    for bad in ("qdrant+local://products", "qdrant://host:6333/", "qdrant://host:6333/a/b", "http://host/c"):
        with pytest.raises(ValueError):
            parse_uri(bad)


@pytest.mark.filterwarnings("ignore:Api key is used with an insecure connection")
@pytest.mark.parametrize(
    "uri", ["qdrant://127.0.0.1:9/products", "qdrant+https://127.0.0.1:9/products"], ids=["http", "https"]
)
def test_an_unreachable_server_names_the_uri_quickly(uri):
    start = time.monotonic()
    store = lfm_qdrant.from_uri(uri, timeout=2, api_key="secret-key")
    with pytest.raises(StoreUnavailableError, match=r"127\.0\.0\.1:9.*unreachable \(read the collection\)") as caught:
        store.ensure_collection(CollectionSpec(dimension=4))
    assert "secret-key" not in str(caught.value)
    with pytest.raises(StoreUnavailableError, match=r"products.*unreachable \(read the collection\)"):
        store.count()
    store.close()
    assert time.monotonic() - start < 15


def test_the_spec_metadata_is_plain_json():
    from lfm_retrieval_qdrant.layout import collection_metadata

    spec = CollectionSpec(dimension=1024, model="LiquidAI/LFM2.5-Embedding-350M")
    assert json.loads(json.dumps(collection_metadata(spec)))["lfm_retrieval"]["model"] == spec.model

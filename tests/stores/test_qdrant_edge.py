"""``qdrant+edge://`` (Qdrant's engine in-process) beyond the dense conformance suite: multivector
and hybrid collections against exact search, every filter form on the engine (bools, integers
beyond 2**53), recall on real text before and after the HNSW build, when the build happens,
close + reopen, bad input refused with nothing changed, and one process per folder."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_edge")

from lfm_retrieval import DenseEncoder
from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError, StoreUnavailableError
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, matches, open_store, parse_filter
from lfm_retrieval_qdrant.edge import QdrantEdgeDenseStore, QdrantEdgeHybridStore, QdrantEdgeMultiVectorStore

DIM = 16
MV = CollectionSpec(DIM, "cosine", model="colbert-test", kind="multivector")
DENSE = CollectionSpec(24, "cosine", model="dense-test")
HYBRID = HybridSpec(DENSE, MV)
BIG = 2**53


def _tokens(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=(int(rng.integers(3, 12)), DIM)).astype(np.float32)


def _records(n: int, kind: str, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    records = []
    for i in range(n):
        payload = {"group": ["a", "b", "c"][i % 3], "n": i, "flag": i % 2 == 0, "big": BIG + i}
        vector = rng.normal(size=DENSE.dimension).astype(np.float32) if kind != "multivector" else None
        tokens = _tokens(rng) if kind != "dense" else None
        records.append(Record(f"doc-{i:03d}", vector, payload, f"fp-{i}", token_vectors=tokens))
    return records


def _same(hits, expected, tolerance=1e-4) -> None:
    assert [h.key for h in hits] == [h.key for h in expected]
    np.testing.assert_allclose([h.score for h in hits], [h.score for h in expected], atol=tolerance, rtol=0)
    assert [h.payload for h in hits] == [h.payload for h in expected]


FILTERS = [
    None,
    {"group": "b"},
    {"flag": True},
    {"flag": False},
    {"big": BIG + 7},
    {"big": {"in": [BIG + 1, BIG + 3]}},
    {"n": {"in": [1, True, 4.0]}},
    {"$or": [{"group": "a"}, {"n": {"gte": 50}}]},
]


@pytest.mark.parametrize("kind", ["multivector", "hybrid"])
def test_multivector_and_hybrid_search_equal_exact_search_and_survive_reopen(tmp_path, kind):
    """Exact MaxSim (and the exact dense top-prefetch reordered by MaxSim) from memory:// are the
    reference; the engine gives the same keys, order, scores and payloads, filtered or not, and
    again after close + reopen; payload updates and deletes persist."""
    spec = MV if kind == "multivector" else HYBRID
    records = _records(80, kind)
    exact = open_store(f"memory://edge-exact-{kind}", kind=kind)
    exact.ensure_collection(spec)
    exact.upsert(records)
    uri = f"qdrant+edge://{tmp_path}/{kind}"
    store = open_store(uri, kind=kind, payload_indexes={"group": "keyword", "n": "float"})
    assert isinstance(store, QdrantEdgeMultiVectorStore if kind == "multivector" else QdrantEdgeHybridStore)
    store.ensure_collection(spec)
    assert store.upsert(records) == 80 and store.count() == 80
    assert set(store.shard.info().payload_schema) == {"_lfm_payload.group", "_lfm_payload.n"}  # normalised paths
    rng = np.random.default_rng(9)
    queries = [(rng.normal(size=DENSE.dimension), _tokens(rng)) for _ in range(4)]

    def search(s, query, flt):
        if kind == "multivector":
            return s.search(query[1], k=10, filter=flt)
        return s.search(query[0], query[1], k=10, filter=flt, prefetch=30)

    for query in queries:
        for flt in FILTERS:
            hits = search(store, query, flt)
            _same(hits, search(exact, query, flt))
            assert all(matches(parse_filter(flt), h.payload) for h in hits)
    store.update_payloads([("doc-001", {"group": "z"}, "fp-new")])
    exact.update_payloads([("doc-001", {"group": "z"}, "fp-new")])
    store.delete(["doc-002"])
    exact.delete(["doc-002"])
    store.close()

    reopened = open_store(uri, kind=kind)
    assert reopened.count() == 79 and reopened.fingerprints() == exact.fingerprints()
    assert reopened.count({"group": "z"}) == 1
    for query in queries:
        for flt in FILTERS:
            _same(search(reopened, query, flt), search(exact, query, flt))
    with pytest.raises(CollectionMismatchError):
        open_store(uri, kind="dense").collection_spec()
    reopened.close()


def test_filters_on_the_engine_select_exactly_the_portable_matches(tmp_path):
    """Every filter form, on the real engine with payload indexes: strings, bools (qdrant-edge-py
    reads a Python True as 1: the adapter sends a numpy bool), integers beyond 2**53 (an integer
    match, not a float range, which would match their neighbours), ints vs floats, hostile names."""
    hostile = "x'); DROP TABLE t; --"
    rng = np.random.default_rng(3)
    spec = CollectionSpec(dimension=8, model="m")
    records = [
        Record(
            f"r{i}",
            rng.normal(size=8),
            {
                "price": float(i) if i % 2 else i,
                "flag": i % 3 == 0,
                "one": 1 if i % 4 == 0 else True,
                "big": BIG + i,
                "colour": ["red", "green", "blue"][i % 3],
                hostile: hostile if i == 7 else "safe",
            },
        )
        for i in range(30)
    ]
    store = open_store(f"qdrant+edge://{tmp_path}/f", payload_indexes={"colour": "keyword", "price": "float"})
    store.ensure_collection(spec)
    store.upsert(records)
    filters = [
        {"price": 3},
        {"price": 4.0},
        {"price": 2.5},
        {"flag": True},
        {"flag": False},
        {"one": 1},
        {"one": True},
        {"big": BIG + 1},
        {"big": BIG},
        {"big": {"in": [BIG + 2, BIG + 29, 5]}},
        {"price": {"in": [1, 2.0, 9, "x", True]}},
        {"colour": {"in": ["red", hostile]}},
        {hostile: hostile},
        {"price": {"gt": 3, "lte": 11.5}, "colour": {"in": ["red", "blue"]}},
        {"$or": [{"colour": "green"}, {"$and": [{"flag": True}, {"price": {"lt": 10}}]}]},
    ]
    try:
        for flt in filters:
            expected = {r.key for r in records if matches(parse_filter(flt), r.payload)}
            assert {h.key for h in store.search(rng.normal(size=8), k=30, filter=flt)} == expected, flt
            assert store.count(flt) == len(expected), flt
        assert {h.key for h in store.search(rng.normal(size=8), k=30, filter={"big": BIG + 1})} == {"r1"}
    finally:
        store.close()


@pytest.fixture(scope="module")
def faq(minilm_path):
    zaragoza = pytest.importorskip("zaragoza_construction_faq")
    items = zaragoza.load(lang="en")
    encoder = DenseEncoder(str(minilm_path), device="cpu")
    documents = encoder.encode_documents([item["a"] for item in items])
    queries = encoder.encode_queries([item["q"] for item in items[::5]])
    records = [Record(item["id"], v, {"category": item["category"]}) for item, v in zip(items, documents, strict=True)]
    return CollectionSpec.for_encoder(encoder), records, queries


def _overlap(store, exact, queries) -> float:
    return float(
        np.mean(
            [len({h.key for h in store.search(q, k=10)} & {h.key for h in exact.search(q, k=10)}) / 10 for q in queries]
        )
    )


def test_real_text_search_equals_exact_before_and_after_the_hnsw_build(faq, tmp_path):
    """MiniLM on the construction-law FAQ: recall@10 against exact search >= 0.99 while the engine
    scans, >= 0.95 once HNSW is built (thresholds lowered so this small corpus is indexed and
    searched through the graph); a bulk_load() builds it when it ends; reopen gives the same hits."""
    spec, records, queries = faq
    exact = open_store("memory://edge-faq-exact")
    exact.ensure_collection(spec)
    exact.upsert(records)
    uri = f"qdrant+edge://{tmp_path}/faq"
    store = open_store(uri, indexing_threshold_kb=1, full_scan_threshold_kb=1)
    assert isinstance(store, QdrantEdgeDenseStore)
    store.ensure_collection(spec)
    with store.bulk_load():
        store.upsert(records[:300])
        store.upsert(records[300:])
        assert store.shard.info().indexed_vectors_count == 0, "no HNSW build inside a bulk load"
        assert _overlap(store, exact, queries) >= 0.99
    assert store.shard.info().indexed_vectors_count == len(records), "built when the bulk load ended"
    after = [[h.key for h in store.search(q, k=10)] for q in queries]
    assert _overlap(store, exact, queries) >= 0.95
    store.close()
    with open_store(uri) as reopened:
        assert [[h.key for h in reopened.search(q, k=10)] for q in queries] == after
        assert reopened.count() == len(records)


def test_hnsw_is_built_once_optimize_after_points_arrived(tmp_path):
    store = open_store(f"qdrant+edge://{tmp_path}/o", optimize_after=50, indexing_threshold_kb=1)
    store.ensure_collection(DENSE)
    records = _records(80, "dense")
    store.upsert(records[:30])
    assert store.shard.info().indexed_vectors_count == 0
    store.upsert(records[30:60])  # 60 >= 50 since the last build
    assert store.shard.info().indexed_vectors_count == 60
    store.upsert(records[60:])
    assert store.shard.info().indexed_vectors_count == 60  # 20 new: scanned until the next build
    assert store.optimize() and store.shard.info().indexed_vectors_count == 80
    store.close()


@pytest.mark.parametrize("kind", ["multivector", "hybrid"])
def test_bad_input_is_refused_and_nothing_stored_changes(tmp_path, kind):
    spec = MV if kind == "multivector" else HYBRID
    store = open_store(f"qdrant+edge://{tmp_path}/bad", kind=kind)
    store.ensure_collection(spec)
    good = _records(10, kind)
    store.upsert(good)
    before = (store.count(), store.fingerprints(), [(r.key, r.token_vectors.tolist()) for r in store.scan()])
    rng = np.random.default_rng(1)
    dense = rng.normal(size=DENSE.dimension) if kind == "hybrid" else None
    bad_batches = [
        [Record("new", dense, token_vectors=np.zeros((0, DIM)))],
        [Record("new", dense, token_vectors=rng.normal(size=(3, DIM + 1)))],
        [Record("new", dense, token_vectors=[[0.1] * DIM, [0.2] * (DIM - 1)])],
        [Record("new", dense, token_vectors=np.full((2, DIM), np.nan))],
        [Record("doc-000", dense, {"bad": float("nan")}, token_vectors=rng.normal(size=(2, DIM)))],
        [Record("doc-000", dense, {"bad": object()}, token_vectors=rng.normal(size=(2, DIM)))],
    ]
    if kind == "hybrid":
        bad_batches.append([Record("new", rng.normal(size=3), token_vectors=rng.normal(size=(2, DIM)))])
    else:
        bad_batches.append([Record("new", rng.normal(size=DIM))])
    for batch in bad_batches:
        with pytest.raises(InvalidRecordError):
            store.upsert([good[0], *batch])
    with pytest.raises(CollectionMismatchError):
        store.ensure_collection(MV if kind == "hybrid" else CollectionSpec(DIM + 1, kind="multivector", model="x"))
    with pytest.raises(ValueError):
        open_store("qdrant+edge://:memory:/x")
    assert (store.count(), store.fingerprints(), [(r.key, r.token_vectors.tolist()) for r in store.scan()]) == before
    store.close()


def test_a_second_process_on_the_folder_gets_a_clear_error_naming_it(tmp_path):
    uri = f"qdrant+edge://{tmp_path}/held"
    store = open_store(uri)
    store.ensure_collection(DENSE)
    store.upsert(_records(5, "dense"))
    again = open_store(uri)  # same process: the shard is shared
    assert again.count() == 5
    code = (
        "import sys\nfrom lfm_retrieval.stores import open_store\n"
        "try:\n    open_store(sys.argv[1]).count()\nexcept Exception as e:\n"
        "    print(type(e).__name__, e)\n    sys.exit(3)\n"
    )
    child = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=120)
    assert child.returncode == 3, child.stderr
    assert child.stdout.startswith("StoreUnavailableError") and str(tmp_path / "held") in child.stdout
    assert "another process" in child.stdout
    again.close()
    store.close()
    child = subprocess.run([sys.executable, "-c", code, uri], capture_output=True, text=True, timeout=120)
    assert child.returncode == 0, child.stdout + child.stderr  # released with the last store
    assert issubclass(StoreUnavailableError, ConnectionError)


def test_stores_opened_before_the_collection_exists_share_it_once_made(tmp_path):
    uri = f"qdrant+edge://{tmp_path}/late"
    early, creator = open_store(uri), open_store(uri)
    with pytest.raises(LookupError, match="does not exist"):
        early.count()
    creator.ensure_collection(DENSE)
    creator.upsert(_records(3, "dense"))
    assert early.count() == 3 and early.shard is creator.shard
    early.ensure_collection(DENSE)
    early.close()
    assert creator.count() == 3
    creator.close()


KILL_CHILD = """
import sys, numpy as np
from lfm_retrieval.stores import CollectionSpec, Record, open_store
store = open_store(sys.argv[1])
store.ensure_collection(CollectionSpec(64, model="kill-test"))
rng = np.random.default_rng(0)
print("ready", flush=True)
for b in range(10_000):
    store.upsert([Record(f"k{b}-{i}", rng.normal(size=64), {"b": b}, f"fp{b}") for i in range(200)], batch_size=200)
"""


def test_sigkill_during_upserts_leaves_a_consistent_folder(tmp_path):
    """Killed while upserting batch after batch: the folder reopens, every batch is there whole or
    not at all (one WAL entry per batch), and the store takes writes again."""
    uri = f"qdrant+edge://{tmp_path}/killed"
    child = subprocess.Popen([sys.executable, "-c", KILL_CHILD, uri], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    import time

    time.sleep(3.0)
    child.kill()
    child.wait(timeout=60)
    store = open_store(uri)
    count = store.count()
    assert count > 0 and count % 200 == 0
    batches = {}
    for record in store.scan(500):
        batches[record.payload["b"]] = batches.get(record.payload["b"], 0) + 1
        assert record.vector.shape == (64,) and np.isfinite(record.vector).all()
    assert set(batches.values()) == {200} and sorted(batches) == list(range(len(batches)))
    store.upsert([Record("after", np.ones(64), {"b": -1})])
    assert store.count() == count + 1
    store.close()
    assert Path(tmp_path, "killed", "lfm_retrieval.json").exists()

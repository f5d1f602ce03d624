"""Qdrant multivector (ColBERT MaxSim) and hybrid (dense prefetch -> MaxSim) stores.

Checked against exact MaxSim in numpy (the core's in-memory stores) and against Qdrant's
real engine in-process (qdrant-edge-py), on ColBERT encodings of the sample catalog and on
random token vectors. Each test runs in local mode and, when ``LFM_TEST_QDRANT_URL`` names
one, against a Qdrant server.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import pytest

lfm_qdrant = pytest.importorskip("lfm_retrieval_qdrant")

from qdrant_client import models  # noqa: E402

from lfm_retrieval import ColBERTEncoder  # noqa: E402
from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QUERIES  # noqa: E402
from lfm_retrieval.errors import CollectionMismatchError  # noqa: E402
from lfm_retrieval.scoring import maxsim_scores  # noqa: E402
from lfm_retrieval.search import search_text  # noqa: E402
from lfm_retrieval.stores import (  # noqa: E402
    CollectionSpec,
    Hit,
    HybridSpec,
    Record,
    matches,
    open_store,
    parse_filter,
)
from lfm_retrieval.stores.memory import MemoryHybridStore, MemoryMultiVectorStore  # noqa: E402
from lfm_retrieval_qdrant import (  # noqa: E402
    QdrantCollection,
    QdrantDenseStore,
    QdrantHybridStore,
    QdrantMultiVectorStore,
    collection,
)
from lfm_retrieval_qdrant.filters import to_filter  # noqa: E402
from lfm_retrieval_qdrant.layout import PAYLOAD_FIELD, point_payload  # noqa: E402
from stores.qdrant_engine import edge_filter  # noqa: E402

N_TEXTS = 48
N_QUERIES = 4
TOL = 1e-4
_names = itertools.count()


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    return (matrix / np.linalg.norm(matrix, axis=-1, keepdims=True)).astype(np.float32)


# -- stores: local mode, and a server when one is given ------------------------------------------


@pytest.fixture(params=["local", "server"])
def open_qdrant(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., QdrantCollection]]:
    """``open_qdrant(kind, name="c")``: a store of ``kind`` on this test's own collection ``name``."""
    if request.param == "server":
        url = request.getfixturevalue("qdrant_url")
        if not url:
            pytest.skip("no Qdrant server here: set LFM_TEST_QDRANT_URL (see docker/)")
        base = f"qdrant://{urlsplit(url).netloc}"
    else:
        base = f"qdrant+local://{tmp_path / 'qdrant'}"
    test_id = next(_names)
    opened: list[QdrantCollection] = []

    def make(kind: str, name: str = "c", **options: Any) -> QdrantCollection:
        store = open_store(f"{base}/mv_{name}_{test_id}", kind=kind, **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        if request.param == "server" and store._handle is not None:
            store.client.delete_collection(store.collection_name)
        store.close()


# -- real data: the sample catalog through the tiny ColBERT checkpoint ---------------------------


@pytest.fixture(scope="module")
def colbert(colbert_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder(str(colbert_path), device="cpu")


@pytest.fixture(scope="module")
def catalog() -> list[dict[str, Any]]:
    with open(SAMPLE_CATALOG, encoding="utf-8") as lines:
        rows = [json.loads(line) for line in lines][:N_TEXTS]
    return rows


@pytest.fixture(scope="module")
def catalog_records(colbert: ColBERTEncoder, catalog: list[dict[str, Any]]) -> list[Record]:
    """Catalog items (title + first sentence, 11 languages) as ColBERT document matrices.

    (Whole descriptions would triple the encoding time and local mode's Python MaxSim scan.)"""
    texts = [f"{row['title']}. {row['description'].split('. ')[0]}" for row in catalog]
    matrices = colbert.encode_documents(texts)
    return [
        Record(
            f"{row['sku']}/{row['locale']}",
            payload={"locale": row["locale"], "price": row["price"], "n": i},
            token_vectors=matrix,
            fingerprint=f"fp-{i}",
        )
        for i, (row, matrix) in enumerate(zip(catalog, matrices, strict=True))
    ]


@pytest.fixture(scope="module")
def catalog_queries(colbert: ColBERTEncoder) -> list[np.ndarray]:
    with open(SAMPLE_QUERIES, encoding="utf-8") as lines:
        texts = [json.loads(line)["text"] for line in lines][:N_QUERIES]
    return colbert.encode_queries(texts)


def random_records(rng: np.random.Generator, n: int, dim: int, *, unit: bool = True) -> list[Record]:
    """Records of 1..12 token vectors each (unit rows, or raw normal ones)."""
    records = []
    for i in range(n):
        matrix = rng.normal(size=(int(rng.integers(1, 13)), dim)).astype(np.float32)
        records.append(
            Record(
                f"r{i}",
                payload={"group": ["a", "b", "c"][i % 3], "n": i},
                token_vectors=unit_rows(matrix) if unit else matrix,
            )
        )
    return records


# -- Qdrant's real engine (qdrant-edge-py) --------------------------------------------------------


def edge_params(spec: CollectionSpec) -> Any:
    import qdrant_edge as qe

    distance = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot}[spec.distance]
    datatype = qe.VectorStorageDatatype.Float16 if spec.vector_type == "float16" else None
    if spec.kind == "dense":
        return qe.EdgeVectorParams(size=spec.dimension, distance=distance, datatype=datatype)
    return qe.EdgeVectorParams(
        size=spec.dimension,
        distance=distance,
        datatype=datatype,
        multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
        hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
    )


class EngineShard:
    """The adapter's layout (same vectors, same payload) in a qdrant-edge shard, queried through its API."""

    def __init__(self, path: Path, spec: CollectionSpec | HybridSpec, records: list[Record]) -> None:
        import qdrant_edge as qe

        self.qe = qe
        if isinstance(spec, HybridSpec):
            config = qe.EdgeConfig(vectors={"dense": edge_params(spec.dense), "colbert": edge_params(spec.multivector)})
            vectors = [
                {"dense": np.asarray(r.vector, np.float32).tolist(), "colbert": np.asarray(r.token_vectors).tolist()}
                for r in records
            ]
        else:
            config = qe.EdgeConfig(vectors=edge_params(spec))
            vectors = [np.asarray(r.token_vectors, np.float32).tolist() for r in records]
        self.shard = qe.EdgeShard.create(str(path), config)
        points = [qe.Point(r.id, v, point_payload(r.key, r.payload)) for r, v in zip(records, vectors, strict=True)]
        self.shard.update(qe.UpdateOperation.upsert_points(points))
        self.shard.update(
            qe.UpdateOperation.create_field_index(f'{PAYLOAD_FIELD}."group"', qe.PayloadSchemaType.Keyword)
        )
        self.shard.optimize()

    def maxsim(self, tokens: np.ndarray, k: int, flt: dict | None = None) -> list[tuple[str, float]]:
        request = self.qe.QueryRequest(
            limit=k,
            query=self.qe.Query.Nearest(tokens.tolist()),
            filter=edge_filter(to_filter(parse_filter(flt))),
            with_payload=True,
        )
        return [(str(p.id), p.score) for p in self.shard.query(request)]

    def hybrid(
        self, vector: np.ndarray, tokens: np.ndarray, k: int, prefetch: int, flt: dict | None = None
    ) -> list[tuple[str, float]]:
        engine_filter = edge_filter(to_filter(parse_filter(flt)))
        first = self.qe.Prefetch(
            limit=prefetch, query=self.qe.Query.Nearest(vector.tolist(), using="dense"), filter=engine_filter
        )
        request = self.qe.QueryRequest(
            limit=k,
            query=self.qe.Query.Nearest(tokens.tolist(), using="colbert"),
            prefetches=[first],
            filter=edge_filter(to_filter(parse_filter(flt))),
            with_payload=True,
        )
        return [(str(p.id), p.score) for p in self.shard.query(request)]

    def close(self) -> None:
        self.shard.close()


def assert_same_hits(hits: list[Hit], expected: list[Hit] | list[tuple[str, float]], tolerance: float = TOL) -> None:
    """Same ids in the same order, scores within ``tolerance``."""
    pairs = [(h.id, h.score) if isinstance(h, Hit) else h for h in expected]
    assert [h.id for h in hits] == [point_id for point_id, _ in pairs]
    np.testing.assert_allclose([h.score for h in hits], [s for _, s in pairs], atol=tolerance, rtol=0)


def memory_store(cls: type, spec: CollectionSpec | HybridSpec, records: list[Record]) -> Any:
    store = cls(f"qdrant-mv-reference-{next(_names)}")
    store.ensure_collection(spec)
    store.upsert(records)
    return store


def exact_top(tokens: np.ndarray, records: list[Record], k: int) -> list[tuple[str, float]]:
    """Exact MaxSim top-``k`` in plain numpy (``lfm_retrieval.scoring.maxsim_scores``)."""
    scores = maxsim_scores([tokens], [np.asarray(r.token_vectors, np.float32) for r in records])[0]
    order = np.argsort(-scores, kind="stable")[:k]
    return [(records[i].id, float(scores[i])) for i in order]


# -- multivector: MaxSim equals numpy and the engine ---------------------------------------------


def test_maxsim_on_colbert_encodings_equals_numpy_and_qdrants_engine(
    open_qdrant, colbert, catalog_records, catalog_queries, tmp_path
):
    """ColBERT matrices of real catalog texts: the adapter's top-10 (plain and filtered) is exact
    MaxSim's (ids, order, scores within 1e-4), and qdrant-edge's."""
    pytest.importorskip("qdrant_edge")
    spec = CollectionSpec.for_encoder(colbert)
    assert spec.kind == "multivector" and spec.dimension == colbert.dimension
    store = open_qdrant("multivector", "catalog")
    assert isinstance(store, QdrantMultiVectorStore)
    store.ensure_collection(spec)
    assert store.upsert(catalog_records) == N_TEXTS
    reference = memory_store(MemoryMultiVectorStore, spec, catalog_records)
    engine = EngineShard(tmp_path / "edge", spec, catalog_records)
    flt = {"locale": {"in": ["en", "de", "fr"]}, "price": {"lt": 150}}
    try:
        for tokens in catalog_queries:
            hits = store.search(tokens, k=10)
            assert_same_hits(hits, exact_top(tokens, catalog_records, 10))
            assert_same_hits(hits, reference.search(tokens, k=10))
            assert_same_hits(hits, engine.maxsim(tokens, 10))
            filtered = store.search(tokens, k=10, filter=flt)
            assert filtered and all(matches(parse_filter(flt), h.payload) for h in filtered)
            assert_same_hits(filtered, reference.search(tokens, k=10, filter=flt))
            assert_same_hits(filtered, engine.maxsim(tokens, 10, flt))
        text_hits = search_text(store, "wireless headphones", colbert=colbert, k=3)
        assert_same_hits(text_hits, exact_top(colbert.encode_queries(["wireless headphones"])[0], catalog_records, 3))
        top = store.search(catalog_records[0].token_vectors, k=1)[0]
        assert (top.key, top.payload) == (catalog_records[0].key, catalog_records[0].payload)
    finally:
        engine.close()


@pytest.mark.parametrize("distance", ["cosine", "dot"])
def test_maxsim_on_random_token_vectors_equals_numpy_and_qdrants_engine(open_qdrant, tmp_path, distance):
    """Random token matrices of 1..12 rows: unit rows for cosine, raw normal rows for dot."""
    pytest.importorskip("qdrant_edge")
    rng = np.random.default_rng(21)
    spec = CollectionSpec(dimension=16, distance=distance, model="m", kind="multivector")
    records = random_records(rng, 80, 16, unit=distance == "cosine")
    store = open_qdrant("multivector", distance)
    store.ensure_collection(spec)
    store.upsert(records)
    engine = EngineShard(tmp_path / "edge", spec, records)
    try:
        for n_tokens in (1, 5, 32):
            query = rng.normal(size=(n_tokens, 16)).astype(np.float32)
            query = unit_rows(query) if distance == "cosine" else query
            hits = store.search(query, k=10)
            assert_same_hits(hits, exact_top(query, records, 10))
            assert_same_hits(hits, engine.maxsim(query, 10))
            group_b = store.search(query, k=10, filter={"group": "b"})
            assert_same_hits(group_b, exact_top(query, [r for r in records if r.payload["group"] == "b"], 10))
            assert_same_hits(group_b, engine.maxsim(query, 10, {"group": "b"}))
    finally:
        engine.close()


def test_the_multivector_collection_is_maxsim_without_hnsw(open_qdrant):
    """Without a first stage (test_qdrant_first_stage.py has the layout with one)."""
    spec = CollectionSpec(dimension=8, model="m", kind="multivector")
    store = open_qdrant("multivector", first_stage="none")
    store.ensure_collection(spec)
    config = store.client.get_collection(store.collection_name).config
    params = config.params.vectors
    assert isinstance(params, models.VectorParams)
    assert params.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
    assert params.hnsw_config.m == 0 and params.size == 8 and params.distance == models.Distance.COSINE
    assert config.metadata["lfm_retrieval"] == {**spec.as_metadata(), "layout": 1}


# -- hybrid: dense prefetch, MaxSim rerank, filter in both stages ---------------------------------


def test_hybrid_is_the_maxsim_order_of_the_dense_top_n(open_qdrant, colbert, dense, catalog, catalog_records, tmp_path):
    """Catalog titles through the dense checkpoint plus the ColBERT matrices: the adapter's hits are
    the exact MaxSim order of the exact dense top-``prefetch`` (numpy, MemoryHybridStore, qdrant-edge)."""
    pytest.importorskip("qdrant_edge")
    vectors = dense.encode_documents([row["title"] for row in catalog])
    records = [
        Record(r.key, vector, dict(r.payload), r.fingerprint, r.token_vectors)
        for r, vector in zip(catalog_records, vectors, strict=True)
    ]
    spec = HybridSpec.for_encoders(dense, colbert)
    store = open_qdrant("hybrid", "catalog")
    assert isinstance(store, QdrantHybridStore)
    store.ensure_collection(spec)
    store.upsert(records)
    reference = memory_store(MemoryHybridStore, spec, records)
    engine = EngineShard(tmp_path / "edge", spec, records)
    queries = ["noise cancelling headphones", "Kaffeemühle", "chaise de bureau"]
    try:
        for text, vector, tokens in zip(
            queries, dense.encode_queries(queries), colbert.encode_queries(queries), strict=True
        ):
            hits = store.search(vector, tokens, k=5, prefetch=12)
            # numpy: the exact dense top-12 by cosine, reordered by MaxSim
            cosine = unit_rows(vectors) @ (vector / np.linalg.norm(vector))
            candidates = [records[i] for i in np.argsort(-cosine, kind="stable")[:12]]
            assert_same_hits(hits, exact_top(tokens, candidates, 5))
            assert_same_hits(hits, reference.search(vector, tokens, k=5, prefetch=12))
            assert_same_hits(hits, engine.hybrid(vector, tokens, 5, 12))
            if text == queries[0]:
                assert_same_hits(search_text(store, text, dense=dense, colbert=colbert, k=5, prefetch=12), hits)
    finally:
        engine.close()


def hybrid_trap(rng: np.random.Generator) -> tuple[HybridSpec, list[Record], np.ndarray, np.ndarray]:
    """Records where the filter matters in both stages and the prefetch bounds the candidates.

    * ``hidden-*`` (group "hidden"): the 5 nearest dense vectors, and tokens next to the
      query's own (MaxSim just under the highest possible): a filter applied only after the
      prefetch would leave nothing of a prefetch of 5, and one applied only before the
      rerank would let them win;
    * ``far``: the query's own tokens (the highest MaxSim possible), but a dense vector
      opposite to the query: never in the dense top-N, so never a hit although it would win;
    * ``r*``: random shown records.
    """
    query_vector = unit_rows(rng.normal(size=(1, 8)))[0]
    query_tokens = unit_rows(rng.normal(size=(4, 16)))
    spec = HybridSpec(CollectionSpec(8, model="d"), CollectionSpec(16, model="c", kind="multivector"))
    records = []
    for i in range(5):
        near = unit_rows(query_vector[None] + 0.01 * rng.normal(size=(1, 8)))[0]
        tokens = unit_rows(query_tokens + 0.02 * (i + 1) * rng.normal(size=query_tokens.shape))
        records.append(Record(f"hidden-{i}", near, {"group": "hidden"}, token_vectors=tokens))
    records.append(Record("far", -query_vector, {"group": "shown"}, token_vectors=query_tokens))
    for i in range(40):
        records.append(
            Record(
                f"r{i}",
                unit_rows(rng.normal(size=(1, 8)))[0],
                {"group": "shown", "n": i},
                token_vectors=unit_rows(rng.normal(size=(int(rng.integers(1, 8)), 16))),
            )
        )
    return spec, records, query_vector, query_tokens


def test_a_hybrid_filter_applies_to_both_stages(open_qdrant, tmp_path):
    pytest.importorskip("qdrant_edge")
    spec, records, vector, tokens = hybrid_trap(np.random.default_rng(8))
    store = open_qdrant("hybrid", "trap")
    store.ensure_collection(spec)
    store.upsert(records)
    reference = memory_store(MemoryHybridStore, spec, records)
    engine = EngineShard(tmp_path / "edge", spec, records)
    shown = {"group": "shown"}
    try:
        unfiltered = store.search(vector, tokens, k=5, prefetch=5)
        assert {h.key for h in unfiltered} == {f"hidden-{i}" for i in range(5)}
        shown_best = maxsim_scores([tokens], [r.token_vectors for r in records if r.key.startswith("r")]).max()
        assert all(shown_best < h.score < 4.0 for h in unfiltered), "hidden records would win the rerank"
        assert_same_hits(unfiltered, reference.search(vector, tokens, k=5, prefetch=5))

        filtered = store.search(vector, tokens, k=5, prefetch=5, filter=shown)
        assert len(filtered) == 5, "the prefetch took 5 shown records, not the 5 hidden ones"
        assert all(h.payload["group"] == "shown" for h in filtered)
        assert "far" not in {h.key for h in filtered}, "outside the dense top-5: never reranked"
        assert_same_hits(filtered, reference.search(vector, tokens, k=5, prefetch=5, filter=shown))
        assert_same_hits(filtered, engine.hybrid(vector, tokens, 5, 5, shown))

        everything = store.search(vector, tokens, k=3, prefetch=len(records), filter=shown)
        assert everything[0].key == "far", "with every record prefetched, MaxSim alone decides"
        assert everything[0].score == pytest.approx(4.0, abs=TOL), "its tokens are the query's: 4 x cosine 1"
        assert_same_hits(everything, engine.hybrid(vector, tokens, 3, len(records), shown))
    finally:
        engine.close()


# -- writes, deletes, counts, payloads, for both kinds -------------------------------------------


def small_spec(kind: str) -> CollectionSpec | HybridSpec:
    colbert = CollectionSpec(dimension=6, model="c", kind="multivector")
    return HybridSpec(CollectionSpec(dimension=4, model="d"), colbert) if kind == "hybrid" else colbert


def small_record(kind: str, key: str, rng: np.random.Generator, payload: dict | None = None, fp: str = "") -> Record:
    tokens = unit_rows(rng.normal(size=(3, 6)))
    vector = unit_rows(rng.normal(size=(1, 4)))[0] if kind == "hybrid" else None
    return Record(key, vector, payload or {}, fp, tokens)


def search_any(store: QdrantCollection, record: Record, k: int = 10, **kw: Any) -> list[Hit]:
    if isinstance(store, QdrantHybridStore):
        return store.search(record.vector, record.token_vectors, k=k, **kw)
    return store.search(record.token_vectors, k=k, **kw)


@pytest.mark.parametrize("kind", ["multivector", "hybrid"])
def test_large_batches_go_in_several_requests(open_qdrant, kind, monkeypatch):
    """A batch over the request budget is split (a server refuses requests over 32 MB); nothing is lost."""
    rng = np.random.default_rng(9)
    monkeypatch.setattr(collection, "MAX_REQUEST_VALUES", 50)  # 18 values (22 hybrid) per record
    store = open_qdrant(kind, **({"first_stage": "none"} if kind == "multivector" else {}))
    store.ensure_collection(small_spec(kind))
    records = [small_record(kind, f"k{i}", rng, {"i": i}) for i in range(25)]
    sent: list[int] = []
    upsert = store.client.upsert

    def counting_upsert(name: str, points: models.Batch, **options: Any) -> Any:
        sent.append(len(points.ids))
        return upsert(name, points, **options)

    monkeypatch.setattr(store.client, "upsert", counting_upsert)
    assert store.upsert(records) == 25 and store.count() == 25
    assert sent == [2] * 12 + [1]
    assert {h.key for h in search_any(store, records[7], k=1)} == {"k7"}


# -- bad input: refused whole, naming the record, nothing written ---------------------------------


def test_a_query_of_the_wrong_shape_is_a_clear_error(open_qdrant):
    store = open_qdrant("multivector")
    store.ensure_collection(small_spec("multivector"))
    for query, message in (
        (np.zeros((0, 6)), "zero token vectors"),
        (np.ones((2, 5)), "expected"),
        (np.ones(6), "expected"),
    ):
        with pytest.raises(ValueError, match=message):
            store.search(query, k=1)


SPEC_OF_KIND = {
    "dense": CollectionSpec(dimension=6, model="m"),
    "multivector": CollectionSpec(dimension=6, model="m", kind="multivector"),
    "hybrid": HybridSpec(
        CollectionSpec(dimension=6, model="m"), CollectionSpec(dimension=6, model="m", kind="multivector")
    ),
}


@pytest.mark.parametrize(
    ("made", "opened"), [(a, b) for a in SPEC_OF_KIND for b in SPEC_OF_KIND if a != b], ids=lambda kind: kind
)
def test_a_collection_of_another_kind_is_refused_before_writing(open_qdrant, made, opened):
    """Same dimension and model: only the kind differs, and it is read from the vector config."""
    first = open_qdrant(made, "kinds")
    first.ensure_collection(SPEC_OF_KIND[made])
    record = {
        "dense": Record("kept", np.ones(6)),
        "multivector": Record("kept", token_vectors=np.ones((2, 6))),
        "hybrid": Record("kept", np.ones(6), token_vectors=np.ones((2, 6))),
    }[made]
    first.upsert([record])
    assert first._read_spec()["kind"] == made
    other = open_qdrant(opened, "kinds")
    with pytest.raises(CollectionMismatchError, match=r"already exists"):
        other.ensure_collection(SPEC_OF_KIND[opened])
    with pytest.raises(CollectionMismatchError, match=f"is a {made} collection; open it as one"):
        other.count()  # opened without ensure_collection: the stored kind is checked on first use
    assert first.count() == 1 and first.fingerprints() == {"kept": ""}


def test_hybrid_settings_are_checked_per_vector(open_qdrant):
    store = open_qdrant("hybrid")
    spec = SPEC_OF_KIND["hybrid"]
    store.ensure_collection(spec)
    store.ensure_collection(spec)  # the same spec again: fine
    changes = {
        "dense vector": HybridSpec(CollectionSpec(6, "dot", model="m"), spec.multivector),
        "multivector": HybridSpec(spec.dense, CollectionSpec(6, model="other", kind="multivector")),
    }
    for where, changed in changes.items():
        with pytest.raises(CollectionMismatchError, match=where):
            store.ensure_collection(changed)


def test_euclid_maxsim_cannot_even_be_specified():
    # Qdrant's euclid MaxSim is the root of summed squared distances, not a sum of per-token
    # similarities: the core refuses such a spec, so no store can be asked to create one.
    with pytest.raises(ValueError, match="not 'euclid'"):
        CollectionSpec(dimension=6, distance="euclid", kind="multivector")


def test_specs_survive_reopening_a_local_folder(tmp_path):
    for kind in ("multivector", "hybrid"):
        rng = np.random.default_rng(2)
        uri = f"qdrant+local://{tmp_path}/reopen_{kind}"
        with open_store(uri, kind=kind) as store:
            store.ensure_collection(small_spec(kind))
            store.upsert([small_record(kind, "a", rng)])
        with open_store(uri, kind=kind) as store:
            assert store.count() == 1 and store.spec == small_spec(kind), "the spec is read back"


# -- float16 -------------------------------------------------------------------------------------


def half(matrix: Any) -> np.ndarray:
    return np.asarray(matrix, np.float32).astype(np.float16).astype(np.float32)


def test_float16_multivectors_round_and_score_like_the_engine(open_qdrant, tmp_path):
    """float16 storage: values are float16-rounded; with ``dot`` the scores are exact MaxSim of the
    rounded query over the rounded values (Qdrant rounds the query to float16 too) and equal
    qdrant-edge's float16 ones (1e-4). Against float32 storage, scores differ by at most
    n_query_tokens * 2**-9 for unit rows: float16 rounding moves a unit vector by at most
    2**-11 (its unit roundoff); the stored vector is rounded, the query too, re-normalising
    for cosine at most doubles the stored error, and a server rounds the normalised vector
    once more (4 * 2**-11 per query token, whose best similarity moves by at most that)."""
    pytest.importorskip("qdrant_edge")
    rng = np.random.default_rng(16)
    records = random_records(rng, 60, 32)
    for distance in ("cosine", "dot"):
        spec16 = CollectionSpec(dimension=32, distance=distance, vector_type="float16", model="m", kind="multivector")
        spec32 = CollectionSpec(dimension=32, distance=distance, model="m", kind="multivector")
        store16 = open_qdrant("multivector", f"h16_{distance}", first_stage="none")
        store32 = open_qdrant("multivector", f"h32_{distance}", first_stage="none")
        store16.ensure_collection(spec16)
        store32.ensure_collection(spec32)
        store16.upsert(records)
        store32.upsert(records)
        params = store16.client.get_collection(store16.collection_name).config.params.vectors
        assert params.datatype == models.Datatype.FLOAT16 and params.multivector_config is not None
        stored = store16.client.retrieve(store16.collection_name, [records[0].id], with_vectors=True)[0].vector
        expected = half(records[0].token_vectors)
        if distance == "cosine":
            expected = unit_rows(expected)  # Qdrant normalises cosine vectors as it stores them
        np.testing.assert_allclose(np.asarray(stored, np.float32), expected, atol=1e-3 if distance == "cosine" else 0)
        engine = EngineShard(tmp_path / f"edge-{distance}", spec16, records) if distance == "dot" else None
        try:
            for n_tokens in (1, 8, 32):
                query = unit_rows(rng.normal(size=(n_tokens, 32)))
                hits16, hits32 = store16.search(query, k=10), store32.search(query, k=60)
                scores32 = {h.id: h.score for h in hits32}
                bound = n_tokens * 2**-9
                assert all(abs(h.score - scores32[h.id]) <= bound for h in hits16)
                if engine is not None:  # dot: exact over the rounded values, as the engine scores float16
                    rounded = [Record(r.key, token_vectors=half(r.token_vectors)) for r in records]
                    assert_same_hits(hits16, exact_top(half(query), rounded, 10))
                    assert_same_hits(hits16, engine.maxsim(query, 10))
        finally:
            if engine is not None:
                engine.close()
    with pytest.raises(CollectionMismatchError, match="vector_type"):
        open_qdrant("multivector", "h16_dot").ensure_collection(spec32)


def test_a_float16_hybrid_uses_float16_for_both_vectors(open_qdrant):
    rng = np.random.default_rng(17)
    spec = HybridSpec(
        CollectionSpec(4, vector_type="float16", model="d"),
        CollectionSpec(6, vector_type="float16", model="c", kind="multivector"),
    )
    store = open_qdrant("hybrid")
    store.ensure_collection(spec)
    params = store.client.get_collection(store.collection_name).config.params.vectors
    assert params["dense"].datatype == params["colbert"].datatype == models.Datatype.FLOAT16
    assert params["colbert"].hnsw_config.m == 0 and params["dense"].multivector_config is None
    records = [small_record("hybrid", f"k{i}", rng) for i in range(10)]
    store.upsert(records)
    hit = search_any(store, records[3], k=1)[0]
    assert hit.key == "k3" and hit.score == pytest.approx(3.0, abs=3 * 2**-10)


# -- URIs ----------------------------------------------------------------------------------------


def test_from_uri_opens_each_kind_for_every_uri_form(tmp_path):
    classes = {"dense": QdrantDenseStore, "multivector": QdrantMultiVectorStore, "hybrid": QdrantHybridStore}
    uris = [
        f"qdrant+local://{tmp_path}/products",
        "qdrant://db.example:6400/products",
        "qdrant+https://db.example/products",
    ]
    for uri in uris:
        for kind, cls in classes.items():
            for store in (lfm_qdrant.from_uri(uri, kind=kind), open_store(uri, kind=kind)):
                assert type(store) is cls and store.kind == kind and store.collection_name == "products"
                store.close()
        with pytest.raises(ValueError, match="kind must be one of"):
            lfm_qdrant.from_uri(uri, kind="sparse")
    assert type(lfm_qdrant.from_uri(uris[1])) is QdrantDenseStore, "dense by default"

"""The MUVERA first stage of Qdrant multivector collections (server, local mode, Qdrant Edge).

The conformance suite with the first stage on; the layout and what is recorded; the two stages
against the same pipeline in numpy (MUVERA top-``prefetch`` by dot product, then exact MaxSim,
the filter in both); recall@10 against exact MaxSim on real text; reopening (a collection made
without a first stage keeps working, a mismatch is a clear error); URI options; and a copy from
a first-stage collection to one without. Server tests run when ``LFM_TEST_QDRANT_URL`` names one.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import urlsplit

import numpy as np
import pytest

lfm_qdrant = pytest.importorskip("lfm_retrieval_qdrant")
pytest.importorskip("fastembed")

from qdrant_client import models  # noqa: E402

from lfm_retrieval.errors import CollectionMismatchError  # noqa: E402
from lfm_retrieval.muvera import DEFAULT_PREFETCH, Muvera  # noqa: E402
from lfm_retrieval.scoring import maxsim_scores  # noqa: E402
from lfm_retrieval.stores import (  # noqa: E402
    CollectionSpec,
    Record,
    Store,
    copy_collection,
    matches,
    open_store,
    parse_filter,
)
from lfm_retrieval.testing.stores import MultiVectorStoreSuite, unique_name  # noqa: E402
from lfm_retrieval_qdrant.first_stage import FIRST_STAGE_DEFAULT  # noqa: E402
from lfm_retrieval_qdrant.uri import uri_options  # noqa: E402
from stores.test_qdrant_store import QdrantFixture  # noqa: E402

pytestmark = pytest.mark.one_stack  # both stacks pin the same store clients and fastembed (tests/conftest.py)
MUVERA: dict[str, Any] = {"first_stage": "muvera"}


# -- the conformance suite with the first stage on ------------------------------------------------


class TestQdrantLocalFirstStage(QdrantFixture, MultiVectorStoreSuite):
    mode = "local"
    options: ClassVar[dict[str, Any]] = MUVERA


class TestQdrantEdgeFirstStage(QdrantFixture, MultiVectorStoreSuite):
    mode = "edge"
    options: ClassVar[dict[str, Any]] = MUVERA


class TestQdrantServerFirstStage(QdrantFixture, MultiVectorStoreSuite):
    mode = "server"
    options: ClassVar[dict[str, Any]] = MUVERA


# -- stores of each mode ----------------------------------------------------------------------------


@pytest.fixture(params=["local", "edge", "server"])
def mode(request: pytest.FixtureRequest) -> str:
    if request.param == "edge":
        pytest.importorskip("qdrant_edge")
    if request.param == "server" and not request.getfixturevalue("qdrant_url"):
        pytest.skip("no Qdrant server here: set LFM_TEST_QDRANT_URL (see docker/)")
    return request.param


@pytest.fixture
def open_mv(mode: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Store]]:
    """``open_mv(name, query="", **options)``: a multivector store of this mode on collection ``name``."""
    if mode == "server":
        base = f"qdrant://{urlsplit(request.getfixturevalue('qdrant_url')).netloc}"
    else:
        base = f"qdrant+{mode}://{tmp_path / mode}"
    names: dict[str, str] = {}
    opened: list[Store] = []

    def make(name: str = "c", query: str = "", **options: Any) -> Store:
        names.setdefault(name, unique_name(f"fs_{name}"))
        opened.append(open_store(f"{base}/{names[name]}{query}", kind="multivector", **options))
        return opened[-1]

    yield make
    for store in opened:
        if mode == "server" and store._handle is not None and store.client.collection_exists(store.collection_name):
            store.client.delete_collection(store.collection_name)
        store.close()


def random_records(rng: np.random.Generator, n: int, dim: int) -> list[Record]:
    """Records of 1 to 40 unit token vectors, payload ``{"group": 0..2, "i": i}``."""
    records = []
    for i in range(n):
        tokens = rng.normal(size=(int(rng.integers(1, 41)), dim)).astype(np.float32)
        tokens /= np.linalg.norm(tokens, axis=1, keepdims=True)
        records.append(Record(f"k{i}", payload={"group": i % 3, "i": i}, token_vectors=tokens))
    return records


def two_stages(
    muvera: Muvera, records: list[Record], query: np.ndarray, k: int, prefetch: int, filter: Any = None
) -> list[str]:
    """The reference: the ``prefetch`` allowed records with the highest MUVERA dot product, by MaxSim."""
    allowed = [r for r in records if filter is None or matches(parse_filter(filter), r.payload)]
    encodings = muvera.encode_documents([r.token_vectors for r in allowed])
    first = np.argsort(-(encodings @ muvera.encode_queries([query])[0]), kind="stable")[:prefetch]
    scores = maxsim_scores([query], [allowed[i].token_vectors for i in first])[0]
    return [allowed[first[j]].key for j in np.argsort(-scores, kind="stable")[:k]]


SPEC = CollectionSpec(32, kind="multivector", model="m")


# -- layout, defaults, reopening ---------------------------------------------------------------------


def test_a_new_collection_gets_the_first_stage_by_default_and_records_it(open_mv, mode, tmp_path):
    store = open_mv()
    store.ensure_collection(SPEC)
    assert FIRST_STAGE_DEFAULT[mode] is True
    stage = store.first_stage
    muvera = Muvera(32)
    assert stage == {
        "kind": "muvera",
        "muvera": muvera.config(),
        "prefetch": DEFAULT_PREFETCH,
        "vector": "muvera",
        "size": muvera.embedding_size,
    }
    recorded = {**SPEC.as_metadata(), "layout": 1, "first_stage": {"kind": "muvera", "muvera": muvera.config()}}
    if mode == "edge":
        folder = Path(store.path)
        assert json.loads((folder / "lfm_retrieval.json").read_text())["lfm_retrieval"] == recorded
        vectors = json.loads((folder / "edge_config.json").read_text())["vectors"]
        assert sorted(vectors) == ["colbert", "muvera"]
        assert vectors["muvera"]["size"] == muvera.embedding_size and vectors["muvera"]["distance"] == "Dot"
        assert vectors["colbert"]["multivector_config"] and vectors["colbert"]["hnsw_config"]["m"] == 0
    else:
        config = store.client.get_collection(store.collection_name).config
        assert config.metadata["lfm_retrieval"] == recorded
        vectors = config.params.vectors
        assert sorted(vectors) == ["colbert", "muvera"]
        assert vectors["muvera"].distance == models.Distance.DOT and vectors["muvera"].size == muvera.embedding_size
        assert vectors["muvera"].multivector_config is None
        colbert = vectors["colbert"]
        assert colbert.multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
        assert colbert.hnsw_config.m == 0
    assert open_mv().collection_spec() == SPEC, "the spec reads back from the named layout"


def test_reopening_keeps_each_collections_first_stage_and_refuses_a_mismatch(open_mv):
    rng = np.random.default_rng(1)
    records = random_records(rng, 40, 32)
    query = records[5].token_vectors
    with_stage = open_mv("with", muvera_k_sim=2, prefetch=15)
    with_stage.ensure_collection(SPEC)
    with_stage.upsert(records)
    exact = open_mv("exact", first_stage="none")
    exact.ensure_collection(SPEC)
    exact.upsert(records)
    assert exact.first_stage is None

    reopened = open_mv("with")  # no options: the recorded settings, the default prefetch
    assert reopened.first_stage["muvera"]["k_sim"] == 2 and reopened.first_stage["prefetch"] == DEFAULT_PREFETCH
    assert [h.key for h in reopened.search(query, 5)] == [h.key for h in with_stage.search(query, 5)]
    assert open_mv("exact").first_stage is None, "a collection made without one keeps searching exactly"
    assert open_mv("exact").search(query, 5)[0].key == "k5"

    mismatches = [
        ("with", "first_stage='none'", {"first_stage": "none"}),
        ("with", "muvera_k_sim: stored 2, asked 3", {"muvera_k_sim": 3}),
        ("with", "muvera_r_reps: stored 20, asked 4", {"muvera_r_reps": 4}),
        ("exact", "made without a first stage", {"first_stage": "muvera"}),
        ("exact", "made without a first stage", {"muvera_dim_proj": 8}),
    ]
    for name, message, options in mismatches:
        store = open_mv(name, **options)
        with pytest.raises(CollectionMismatchError, match=message):
            store.ensure_collection(SPEC)
        with pytest.raises(CollectionMismatchError, match="nothing was written"):
            store.upsert([Record("new", token_vectors=records[0].token_vectors)])
    assert open_mv("with").count() == 40 and open_mv("exact").count() == 40, "nothing was written"


def test_uri_options_set_the_first_stage_and_bad_ones_are_refused(open_mv, mode):
    store = open_mv("q", "?first_stage=muvera&prefetch=7&muvera_k_sim=2&muvera_r_reps=3&muvera_seed=9")
    store.ensure_collection(SPEC)
    assert store.first_stage["prefetch"] == 7
    assert {k: store.first_stage["muvera"][k] for k in ("k_sim", "r_reps", "seed")} == {
        "k_sim": 2,
        "r_reps": 3,
        "seed": 9,
    }
    assert open_mv("q", "?prefetch=3", prefetch=11).first_stage["prefetch"] == 11, "arguments win"
    none = open_mv("n", "?first_stage=none")
    none.ensure_collection(SPEC)
    assert none.first_stage is None
    assert uri_options("qdrant://h/c?exact=true&hnsw_ef=64") == {"exact": True, "hnsw_ef": 64}
    for query, message in {
        "?prefetch=many": "prefetch='many' must be an integer",
        "?prefetch=0": "prefetch must be a positive int",
        "?first_stage=plaid": "first_stage must be one of",
        "?muvera_k_sim=-1": "muvera_k_sim must be a positive int",
        "?first_stage=none&muvera_k_sim=3": "MUVERA settings were given with first_stage='none'",
        "?exact=perhaps": "must be true or false",
        "?api_key=secret": "unknown option 'api_key'",
    }.items():
        with pytest.raises(ValueError, match=message):
            open_mv("bad", query)
    with pytest.raises(ValueError, match="prefetch set a multivector collection's first stage, not a dense"):
        open_store("qdrant+local://:memory:/d?prefetch=5")
    with pytest.raises(ValueError, match="first_stage set a multivector collection's first stage, not a hybrid"):
        open_store("qdrant+local://:memory:/h", kind="hybrid", first_stage="muvera")


# -- the two stages ----------------------------------------------------------------------------------


def test_search_is_the_maxsim_order_of_the_muvera_top_prefetch_with_the_filter_in_both(open_mv, mode):
    """With a prefetch smaller than the collection, the hits are exactly the reference pipeline's
    (numpy: MUVERA dot product top-``prefetch`` of the allowed records, reordered by MaxSim), with
    MaxSim scores; a filter that excludes the best MUVERA candidates still gets ``prefetch`` allowed ones."""
    rng = np.random.default_rng(7)
    records = random_records(rng, 150, 32)
    store = open_mv(prefetch=12, exact=True)  # exact=True: the first stage scans (HNSW is checked on real text)
    store.ensure_collection(SPEC)
    store.upsert(records)
    muvera = Muvera.from_config(store.first_stage["muvera"])
    by_key = {r.key: r for r in records}
    for q in range(4):
        query = rng.normal(size=(int(rng.integers(4, 33)), 32)).astype(np.float32)
        query /= np.linalg.norm(query, axis=1, keepdims=True)
        for filter in (None, {"group": 1}, {"i": {"lt": 30}}):
            hits = store.search(query, 5, filter)
            assert [h.key for h in hits] == two_stages(muvera, records, query, 5, 12, filter), (q, filter)
            for hit in hits:
                exact = float(maxsim_scores([query], [by_key[hit.key].token_vectors])[0][0])
                assert hit.score == pytest.approx(exact, abs=1e-4)
    top = store.search(records[20].token_vectors, 3)
    assert top[0].key == "k20"
    assert [h.key for h in store.search(records[20].token_vectors, 20)][:1] == ["k20"], "k beyond prefetch: k wins"
    assert len(store.search(records[20].token_vectors, 20)) == 20


@pytest.fixture(scope="module")
def faq_tokens(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> dict[str, Any]:
    """The 503 construction-law FAQ answers (17 to 77 words) and 60 of its questions, as ColBERT
    token vectors of the real MiniLM through PyLate's ColBERT head (an offline stand-in)."""
    zaragoza = pytest.importorskip("zaragoza_construction_faq")
    from lfm_retrieval import ColBERTEncoder
    from lfm_retrieval.testing import build_minilm_colbert

    items = zaragoza.load(lang="en")
    encoder = ColBERTEncoder(str(build_minilm_colbert(tmp_path_factory.mktemp("minilm-colbert") / "m", minilm_path)))
    documents = encoder.encode_documents([item["a"] for item in items])
    queries = encoder.encode_queries([item["q"] for item in items[:: len(items) // 60][:60]])
    return {"documents": documents, "queries": queries, "dimension": encoder.dimension, "model": encoder.model_id}


def test_recall_at_10_against_exact_maxsim_on_real_text_at_default_settings(open_mv, mode, faq_tokens, record_property):
    """503 documents of mixed lengths, default MUVERA settings and prefetch; on Qdrant Edge with the
    HNSW index of the MUVERA vector built (thresholds lowered so 503 points get one)."""
    documents, queries = faq_tokens["documents"], faq_tokens["queries"]
    spec = CollectionSpec(faq_tokens["dimension"], kind="multivector", model=faq_tokens["model"])
    options = {"indexing_threshold_kb": 100, "full_scan_threshold_kb": 10} if mode == "edge" else {}
    store = open_mv("faq", **options)
    store.ensure_collection(spec)
    with store.bulk_load():  # Qdrant Edge builds its HNSW index when the block ends
        store.upsert(Record(f"a{i}", token_vectors=tokens) for i, tokens in enumerate(documents))
    recalls = []
    for query in queries:
        exact = np.argsort(-maxsim_scores([query], documents)[0], kind="stable")[:10]
        found = {h.key for h in store.search(query, 10)}
        recalls.append(len(found & {f"a{i}" for i in exact}) / 10)
    recall = float(np.mean(recalls))
    record_property("recall_at_10", recall)
    print(f"\n{mode}: recall@10 against exact MaxSim {recall:.3f} ({len(documents)} documents, {len(queries)} queries)")
    assert recall >= 0.95


# -- copy ----------------------------------------------------------------------------------------------


def test_a_copy_from_a_first_stage_collection_to_one_without_keeps_every_record(open_mv):
    rng = np.random.default_rng(3)
    records = random_records(rng, 60, 32)
    source = open_mv("src")
    source.ensure_collection(SPEC)
    source.upsert(records)
    destination = open_mv("dst", first_stage="none")
    report = copy_collection(source, destination, batch_size=16)
    assert (report.copied, report.total) == (60, 60) and destination.first_stage is None
    copied = {r.key: r for r in destination.scan()}
    for record in records:
        np.testing.assert_allclose(copied[record.key].token_vectors, record.token_vectors, atol=1e-6)
        assert copied[record.key].payload == record.payload
    query = records[9].token_vectors
    exact = np.argsort(-maxsim_scores([query], [r.token_vectors for r in records])[0], kind="stable")[:10]
    assert [h.key for h in destination.search(query, 10)] == [records[i].key for i in exact]
    back = open_mv("back")  # and into a first-stage collection again: encoded on the way in
    assert copy_collection(destination, back).copied == 60 and back.first_stage is not None
    assert back.search(query, 1)[0].key == "k9"

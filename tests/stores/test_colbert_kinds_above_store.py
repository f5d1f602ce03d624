"""What sits above a store, on the ColBERT kinds (``hybrid`` and ``multivector``) of PostgreSQL (pgvector) and
the Milvus server: ``serve``'s ``/search``, the LangChain and LlamaIndex ``LFMRetriever``, the LangChain and
LlamaIndex ColBERT rerankers over such a retriever, and ``lfm-retrieval eval``. Each is checked against
``search_text`` on the same store and against the exact in-memory store indexed from the same catalog by the same
command."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lfm_retrieval import ColBERTEncoder, DenseEncoder, rerank, search_text
from lfm_retrieval.cli import app
from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QRELS, SAMPLE_QUERIES
from lfm_retrieval.scoring import ExactMaxSim
from lfm_retrieval.stores import Store, open_store

pytestmark = pytest.mark.one_stack

KINDS = {"hybrid": "hybrid", "multivector": "colbert"}  # store kind -> the CLI's --mode
# Milvus is its 2.3 standalone server (tests/stores/services.py). Milvus Lite is left out: its per-file server
# drops fresh clients ("Too many pings") under this module, and the CLI's eval opens one.
BACKENDS = ["postgresql", "milvus"]
QUERY, FILTER = "waterproof jacket", {"locale": "en"}
runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def _location(backend: str, name: str, request: pytest.FixtureRequest) -> str:
    """The URI of table / collection ``name`` on the test session's server of ``backend`` (skips without it)."""
    if backend == "postgresql":
        pytest.importorskip("lfm_retrieval_pgvector")
        pytest.importorskip("psycopg")
        from stores.test_pgvector_store import with_table

        return with_table(request.getfixturevalue("postgres_dsn"), name)
    pytest.importorskip("lfm_retrieval_milvus")
    return f"{request.getfixturevalue('milvus_uri').rstrip('/')}/{name}"


class Indexed:
    """URIs that ``lfm-retrieval index`` filled with the module's catalog, each on first use (one table or
    collection per backend and kind; a backend that cannot run skips its own tests only)."""

    def __init__(self, catalog: Path, dense_path: Path, colbert_path: Path) -> None:
        self.catalog, self.models = catalog, ["--model", str(dense_path), "--colbert", str(colbert_path)]
        self.stamp = int(time.time() * 1000) % 10**8
        self.uris: dict[tuple[str, str], str] = {}

    def uri(self, backend: str, kind: str, request: pytest.FixtureRequest) -> str:
        """The store of ``backend`` (or ``"memory"``, the exact in-memory store) and ``kind``, indexed."""
        if (backend, kind) not in self.uris:
            name = f"above_{kind[:5]}_{self.stamp}"
            uri = f"memory://{name}" if backend == "memory" else _location(backend, name, request)
            args = ["--store", uri, *self.models, "--mode", KINDS[kind], "--payload", "title", "--payload", "locale"]
            summary = _cli("index", str(self.catalog), *args, "--json")
            summary = json.loads(summary[summary.index("{") :])
            assert (summary["read"], summary["written"], summary["failed"]) == (60, 60, 0)
            self.uris[backend, kind] = uri
        return self.uris[backend, kind]


@pytest.fixture(scope="module")
def encoders(dense_path: Path, colbert_path: Path) -> tuple[DenseEncoder, ColBERTEncoder]:
    return DenseEncoder(str(dense_path), device="cpu"), ColBERTEncoder(str(colbert_path), device="cpu")


@pytest.fixture(scope="module")
def indexed(dense_path: Path, colbert_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Indexed:
    """60 catalog rows, indexed on demand into each backend and the exact memory store, for each ColBERT kind."""
    catalog = tmp_path_factory.mktemp("above-store") / "catalog.jsonl"
    catalog.write_text("".join(Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines(True)[:60]), "utf-8")
    return Indexed(catalog, dense_path, colbert_path)


@pytest.fixture
def uris(indexed: Indexed, backend: str, kind: str, request: pytest.FixtureRequest) -> tuple[str, str]:
    """The (store URI, memory URI) of the test's backend and kind."""
    return indexed.uri(backend, kind, request), indexed.uri("memory", kind, request)


@pytest.fixture
def stores(uris: tuple[str, str], kind: str) -> Iterator[tuple[Store, Store]]:
    """The test's (backend, kind), opened: the store under test and its memory twin."""
    store, reference = open_store(uris[0], kind=kind), open_store(uris[1], kind=kind)
    yield store, reference
    store.close()


def _keys(hits) -> list[str]:
    return [hit.key for hit in hits]


parametrize = pytest.mark.parametrize(("backend", "kind"), [(b, k) for b in BACKENDS for k in KINDS])


@parametrize
def test_search_text_equals_the_exact_memory_store(stores, encoders, backend, kind) -> None:
    store, reference = stores
    dense, colbert = encoders
    got = search_text(store, QUERY, dense=dense, colbert=colbert, k=5, filter=FILTER)
    want = search_text(reference, QUERY, dense=dense, colbert=colbert, k=5, filter=FILTER)
    assert len(got) == 5 and _keys(got) == _keys(want)
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=0, atol=1e-4)
    assert all(hit.payload["locale"] == "en" for hit in got)


@parametrize
def test_serve_search_equals_search_text(stores, encoders, dense_path, colbert_path, backend, kind) -> None:
    httpx = pytest.importorskip("httpx")
    pytest.importorskip("uvicorn")
    from lfm_retrieval.serve import create_app
    from test_serve import Server

    store, reference = stores
    dense, colbert = encoders
    expected = search_text(store, QUERY, dense=dense, colbert=colbert, k=5, filter=FILTER, prefetch=30)
    # the server closes its encoders when it stops: it gets its own
    own = DenseEncoder(str(dense_path), device="cpu"), ColBERTEncoder(str(colbert_path), device="cpu")
    server = Server(create_app(*own, stores={"products": store}))
    try:
        got = server.client.post(
            "/search", json={"store": "products", "query": QUERY, "k": 5, "filter": FILTER, "prefetch": 30}
        )
    finally:
        server.stop()
    assert isinstance(got, httpx.Response) and got.status_code == 200, got.text
    hits = got.json()["hits"]
    assert [h["key"] for h in hits] == _keys(expected) and len(hits) == 5
    np.testing.assert_allclose([h["score"] for h in hits], [h.score for h in expected], rtol=0, atol=1e-5)
    memory = search_text(reference, QUERY, dense=dense, colbert=colbert, k=5, filter=FILTER, prefetch=30)
    assert [h["key"] for h in hits] == _keys(memory)


@parametrize
def test_langchain_retriever_and_reranker(stores, encoders, colbert_path, backend, kind) -> None:
    pytest.importorskip("langchain_lfm")
    from langchain_lfm import LFMColBERTReranker, LFMRetriever

    store, reference = stores
    dense, colbert = encoders
    retriever = LFMRetriever(
        store=store, dense_encoder=dense, colbert_encoder=colbert, k=6, filter=FILTER, text_field="title"
    )
    docs = retriever.invoke(QUERY)
    expected = search_text(store, QUERY, dense=dense, colbert=colbert, k=6, filter=FILTER)
    assert (
        [d.id for d in docs]
        == _keys(expected)
        == _keys(search_text(reference, QUERY, dense=dense, colbert=colbert, k=6, filter=FILTER))
    )
    assert [d.page_content for d in docs] == [h.payload["title"] for h in expected]
    np.testing.assert_allclose([d.metadata["score"] for d in docs], [h.score for h in expected], rtol=0, atol=1e-5)

    reranker = LFMColBERTReranker(model=str(colbert_path), top_n=3, device="cpu")
    kept = reranker.compress_documents(docs, QUERY)
    order = rerank(QUERY, [d.page_content for d in docs], colbert)[:3]
    assert [d.id for d in kept] == [docs[r.index].id for r in order]


@parametrize
def test_llamaindex_retriever_equals_search_text(stores, encoders, backend, kind) -> None:
    pytest.importorskip("llama_index.retrievers.lfm")
    from llama_index.retrievers.lfm import LFMRetriever

    store, reference = stores
    dense, colbert = encoders
    retriever = LFMRetriever(
        store, embed_model=dense, colbert=colbert, similarity_top_k=5, filters=FILTER, text_field="title"
    )
    nodes = retriever.retrieve(QUERY)
    expected = search_text(store, QUERY, dense=dense, colbert=colbert, k=5, filter=FILTER)
    assert [n.node.node_id for n in nodes] == _keys(expected)
    assert [n.node.get_content() for n in nodes] == [h.payload["title"] for h in expected]
    np.testing.assert_allclose([n.score for n in nodes], [h.score for h in expected], rtol=0, atol=1e-5)
    assert _keys(expected) == _keys(search_text(reference, QUERY, dense=dense, colbert=colbert, k=5, filter=FILTER))


@parametrize
def test_llamaindex_reranker_orders_the_retrievers_nodes_by_exact_maxsim(
    stores, encoders, colbert_path, backend, kind
) -> None:
    pytest.importorskip("llama_index.retrievers.lfm")
    pytest.importorskip("llama_index.postprocessor.lfm")
    from llama_index.core.schema import MetadataMode

    from llama_index.postprocessor.lfm import LFMColBERTRerank
    from llama_index.retrievers.lfm import LFMRetriever

    store, _ = stores
    dense, colbert = encoders
    retriever = LFMRetriever(
        store, embed_model=dense, colbert=colbert, similarity_top_k=6, filters=FILTER, text_field="title"
    )
    # reversed: the store already ranks by MaxSim, so a reranker that kept the input order would pass otherwise
    nodes = retriever.retrieve(QUERY)[::-1]
    assert len(nodes) == 6
    reranker = LFMColBERTRerank(top_n=3, model_name=str(colbert_path), device="cpu")
    kept = reranker.postprocess_nodes(nodes, query_str=QUERY)

    texts = [n.node.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]  # what the reranker scores
    assert texts == [n.node.metadata["title"] for n in nodes]
    exact = ExactMaxSim(colbert.encode_documents(texts)).search(colbert.encode_queries([QUERY])[0], k=3)
    assert [r.index for r in exact] != [0, 1, 2]
    assert kept[0].node.node_id == nodes[exact[0].index].node.node_id
    assert [n.node.node_id for n in kept] == [nodes[r.index].node.node_id for r in exact]
    np.testing.assert_allclose([n.score for n in kept], [r.score for r in exact], rtol=0, atol=1e-5)


@pytest.fixture(scope="module")
def memory_evals() -> dict[str, dict]:
    """``lfm-retrieval eval`` of the memory store per kind, run once for every backend's comparison."""
    return {}


@parametrize
def test_eval_scores_the_store_as_the_exact_memory_store(
    uris, memory_evals, dense_path, colbert_path, backend, kind
) -> None:
    uri, memory = uris
    models = ["--model", str(dense_path), "--colbert", str(colbert_path), "--mode", KINDS[kind]]
    args = ["eval", "--queries", str(SAMPLE_QUERIES), "--qrels", str(SAMPLE_QRELS), *models]
    got = json.loads(_cli(*args, "--store", uri))
    if kind not in memory_evals:
        memory_evals[kind] = json.loads(_cli(*args, "--store", memory))
    want = memory_evals[kind]
    assert got["queries"] == 24 and want["recall@10"] > 0
    assert got == pytest.approx(want, abs=1e-9)

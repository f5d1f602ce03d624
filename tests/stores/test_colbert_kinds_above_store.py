"""What sits above a store, on the ColBERT kinds of PostgreSQL (pgvector ``hybrid`` and ``multivector``):
``serve``'s ``/search``, the LangChain and LlamaIndex ``LFMRetriever``, the LangChain
reranker over such a retriever, and ``lfm-retrieval eval``. Each is checked against ``search_text`` on the
same store and against the exact in-memory store indexed from the same catalog by the same command."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from itertools import count
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from lfm_retrieval import ColBERTEncoder, DenseEncoder, rerank, search_text
from lfm_retrieval.cli import app
from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QRELS, SAMPLE_QUERIES
from lfm_retrieval.stores import Store, open_store

pytest.importorskip("lfm_retrieval_pgvector")
pytest.importorskip("psycopg")

from stores.test_pgvector_store import with_table

pytestmark = pytest.mark.one_stack

KINDS = {"hybrid": "hybrid", "multivector": "colbert"}  # store kind -> the CLI's --mode
# Milvus Lite left out: its per-file server drops fresh clients ("Too many pings") under this module
BACKENDS = ["postgresql"]
QUERY, FILTER = "waterproof jacket", {"locale": "en"}
_names = count()
runner = CliRunner()


def _cli(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def encoders(dense_path: Path, colbert_path: Path) -> tuple[DenseEncoder, ColBERTEncoder]:
    return DenseEncoder(str(dense_path), device="cpu"), ColBERTEncoder(str(colbert_path), device="cpu")


@pytest.fixture(scope="module")
def indexed(
    request: pytest.FixtureRequest, dense_path: Path, colbert_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """``{(backend, kind): (store URI, memory URI)}``: 60 catalog rows indexed by ``lfm-retrieval index`` into a
    table of PostgreSQL, a Milvus Lite collection and the exact memory store, for each ColBERT kind."""
    folder = tmp_path_factory.mktemp("above-store")
    catalog = folder / "catalog.jsonl"
    catalog.write_text("".join(Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines(True)[:60]), "utf-8")
    stamp = int(time.time() * 1000) % 10**8
    uris = {}
    for kind, mode in KINDS.items():
        models = ["--model", str(dense_path), "--colbert", str(colbert_path), "--mode", mode]
        memory = f"memory://above-{kind}-{stamp}-{next(_names)}"
        targets = {
            "postgresql": with_table(request.getfixturevalue("postgres_dsn"), f"above_{kind[:5]}_{stamp}"),
        }
        for uri in (memory, *targets.values()):
            summary = _cli(
                "index", str(catalog), "--store", uri, *models, "--payload", "title", "--payload", "locale", "--json"
            )
            summary = json.loads(summary[summary.index("{") :])
            assert (summary["read"], summary["written"], summary["failed"]) == (60, 60, 0)
        for backend, uri in targets.items():
            uris[backend, kind] = (uri, memory)
    yield uris


@pytest.fixture
def stores(indexed: dict, request: pytest.FixtureRequest) -> Iterator[tuple[Store, Store]]:
    """The (backend, kind) of the test's parameters, opened: the store under test and its memory twin."""
    backend, kind = request.node.callspec.params["backend"], request.node.callspec.params["kind"]
    uri, memory = indexed[backend, kind]
    store, reference = open_store(uri, kind=kind), open_store(memory, kind=kind)
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


# PostgreSQL only: after the tests above, the CLI's fresh client to the same Milvus Lite file loses its
# connection ("Too many pings") when the whole module runs; alone it passes.
@pytest.mark.parametrize("backend", ["postgresql"])
@pytest.mark.parametrize("kind", list(KINDS))
def test_eval_scores_the_store_as_the_exact_memory_store(indexed, dense_path, colbert_path, backend, kind) -> None:
    uri, memory = indexed[backend, kind]
    models = ["--model", str(dense_path), "--colbert", str(colbert_path), "--mode", KINDS[kind]]
    args = ["eval", "--queries", str(SAMPLE_QUERIES), "--qrels", str(SAMPLE_QRELS), *models]
    got, want = (json.loads(_cli(*args, "--store", target)) for target in (uri, memory))
    assert got["queries"] == 24 and want["recall@10"] > 0
    assert got == pytest.approx(want, abs=1e-9)

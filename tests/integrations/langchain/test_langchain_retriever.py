"""LFMRetriever over dense, multivector and hybrid stores: the same hits as searching the store
directly, as LangChain Documents; filters, per-call options, async; clear errors."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from langchain_core.documents import Document

from langchain_lfm import LFMEmbeddings, LFMRetriever, retrievers
from lfm_retrieval import DenseEncoder, InvalidTextError
from lfm_retrieval.errors import CollectionMismatchError
from lfm_retrieval.search import search_text
from lfm_retrieval.stores import Hit, HybridStore, MultiVectorStore, Store

QUERY = "white leather sneakers"
KINDS = ["dense", "multivector", "hybrid"]


def direct_search(store: Store, dense, colbert, query: str, k: int, filter: Any = None) -> list[Hit]:
    """What the store itself returns for ``query`` (the reference for the retriever): its own
    ``search`` with the query encoded here."""
    vector, tokens = dense.encode_queries([query])[0], colbert.encode_queries([query])[0]
    if isinstance(store, HybridStore):
        return store.search(vector, tokens, k, filter, prefetch=100)
    if isinstance(store, MultiVectorStore):
        return store.search(tokens, k, filter)
    return store.search(vector, k, filter)


def retriever_for(store: Store, dense, colbert, **fields: Any) -> LFMRetriever:
    encoders = {"dense": {"dense_encoder": dense}, "multivector": {"colbert_encoder": colbert}}
    return LFMRetriever(
        store=store, **encoders.get(store.kind, {"dense_encoder": dense, "colbert_encoder": colbert}), **fields
    )


def assert_same(documents: list[Document], hits: list[Hit]) -> None:
    assert [d.metadata["id"] for d in documents] == [h.key for h in hits]
    assert [d.id for d in documents] == [h.key for h in hits]
    np.testing.assert_allclose([d.metadata["score"] for d in documents], [h.score for h in hits], rtol=1e-6)
    for document, hit in zip(documents, hits, strict=True):
        assert document.page_content == hit.payload["text"]
        assert document.metadata["store_id"] == hit.id
        assert {name: document.metadata[name] for name in ("sku", "category", "price")} == {
            name: hit.payload[name] for name in ("sku", "category", "price")
        }
        assert "text" not in document.metadata  # the text is page_content, not repeated


@pytest.mark.parametrize("backend", ["memory", "qdrant-local"])
@pytest.mark.parametrize("kind", KINDS)
def test_same_hits_as_the_store(fill_store, minilm_dense, minilm_colbert, kind: str, backend: str) -> None:
    store = fill_store(backend, kind)
    retriever = retriever_for(store, minilm_dense, minilm_colbert, k=5)
    hits = direct_search(store, minilm_dense, minilm_colbert, QUERY, 5)
    documents = retriever.invoke(QUERY)
    assert_same(documents, hits)
    assert_same(asyncio.run(retriever.ainvoke(QUERY)), hits)
    assert documents[0].metadata["sku"] == "SKU-10039"
    # Per-call k and filter, and the retriever's own filter.
    cheap = {"price": {"lte": 60}}
    assert_same(
        retriever.invoke(QUERY, k=2, filter=cheap), direct_search(store, minilm_dense, minilm_colbert, QUERY, 2, cheap)
    )
    filtered = retriever_for(store, minilm_dense, minilm_colbert, k=3, filter={"category": "Tools & DIY"})
    documents = filtered.invoke("cordless drill")
    assert documents and {d.metadata["category"] for d in documents} == {"Tools & DIY"}
    assert_same(
        documents, direct_search(store, minilm_dense, minilm_colbert, "cordless drill", 3, {"category": "Tools & DIY"})
    )


def test_opened_from_a_uri_with_embeddings(fill_store, minilm_dense, minilm_colbert) -> None:
    store = fill_store("memory", "hybrid")
    retriever = LFMRetriever(
        store=store.uri,
        kind="hybrid",
        dense_encoder=LFMEmbeddings.from_encoder(minilm_dense),
        colbert_encoder=minilm_colbert,
        k=3,
        prefetch=10,
    )
    assert retriever.kind == "hybrid" and retriever.dense_encoder is minilm_dense
    hits = search_text(store, QUERY, dense=minilm_dense, colbert=minilm_colbert, k=3, prefetch=10)
    assert_same(retriever.invoke(QUERY), hits)


def test_batch_and_concurrent_async(fill_store, minilm_dense, minilm_colbert) -> None:
    retriever = retriever_for(fill_store("memory", "dense"), minilm_dense, minilm_colbert, k=2)
    queries = [QUERY, "cordless drill", "noise cancelling headphones for flights"]

    async def gather() -> list[list[Document]]:
        return await asyncio.gather(*(retriever.ainvoke(q) for q in queries))

    concurrent, batched = asyncio.run(gather()), retriever.batch(queries)
    assert [[d.id for d in docs] for docs in concurrent] == [[d.id for d in docs] for docs in batched]
    for got, expected in zip(concurrent, batched, strict=True):  # float32 sums may differ in the last bit
        np.testing.assert_allclose([d.metadata["score"] for d in got], [d.metadata["score"] for d in expected], 1e-6)
        assert [d.page_content for d in got] == [d.page_content for d in expected]


@pytest.mark.parametrize("query", ["", "   ", None])
def test_bad_queries(fill_store, minilm_dense, minilm_colbert, query: object) -> None:
    retriever = retriever_for(fill_store("memory", "hybrid"), minilm_dense, minilm_colbert)
    with pytest.raises(InvalidTextError, match="query is"):
        retriever.invoke(query)  # type: ignore[arg-type]
    with pytest.raises(InvalidTextError, match="query is"):
        asyncio.run(retriever.ainvoke(query))  # type: ignore[arg-type]


def test_a_missing_encoder_is_the_default_model(fill_store, minilm_colbert, monkeypatch) -> None:
    """An encoder the kind needs and that is not given is built with no arguments (the LFM2.5 model),
    as LlamaIndex's LFMRetriever does; one the kind does not use is not built."""
    built: list[tuple] = []

    def default_colbert(*args: object) -> object:
        built.append(args)
        return minilm_colbert

    monkeypatch.setattr(retrievers, "ColBERTEncoder", default_colbert)
    monkeypatch.setattr(
        retrievers, "DenseEncoder", lambda *args: pytest.fail("a multivector store needs no dense model")
    )
    retriever = LFMRetriever(store=fill_store("memory", "multivector"))
    assert built == [()] and retriever.colbert_encoder is minilm_colbert and retriever.dense_encoder is None
    assert retriever.invoke(QUERY, k=2)


def test_configuration_errors(fill_store, minilm_dense, minilm_colbert, dense: DenseEncoder) -> None:
    multivector = fill_store("memory", "multivector")
    with pytest.raises(ValueError, match="kind='dense' but"):
        LFMRetriever(store=multivector, kind="dense", colbert_encoder=minilm_colbert)
    with pytest.raises(ValueError, match="extra"):
        LFMRetriever(store=multivector, colbert_encoder=minilm_colbert, top_k=3)
    retriever = LFMRetriever(store=multivector, colbert_encoder=minilm_colbert)
    with pytest.raises(TypeError, match=r"unexpected search arguments \['top_k'\]"):
        retriever.invoke(QUERY, top_k=3)
    with pytest.raises(ValueError, match="k must be a positive int"):
        retriever.invoke(QUERY, k=0)
    # A collection written by another model is refused before searching.
    wrong_model = LFMRetriever(store=fill_store("memory", "dense"), dense_encoder=dense)
    with pytest.raises(CollectionMismatchError, match="holds vectors of"):
        wrong_model.invoke(QUERY)
    # A payload without the text field names the fields it has.
    with pytest.raises(KeyError, match="has no 'title' field"):
        LFMRetriever(store=multivector, colbert_encoder=minilm_colbert, text_field="title").invoke(QUERY)

"""LFMVectorStore on the schemes the behaviour tests leave out: PLAID (multivector; pylate and
fast-plaid exist only in the ``full`` stack, elsewhere those tests skip) and Qdrant local mode
(dense and hybrid), each written and searched through LangChain's own API."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document

from langchain_lfm import LFMEmbeddings, LFMVectorStore
from lfm_retrieval.search import search_text

QUERIES = ("white leather sneakers", "shoes for running on trails")


def needs(*modules: str) -> None:
    """Skip, naming the first missing module (the PLAID store needs pylate and fast_plaid)."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            pytest.skip(f"{module} is not installed (the full stack has it)")


def documents(catalog: list[dict]) -> list[Document]:
    return [
        Document(id=row["key"], page_content=row["text"], metadata={"sku": row["sku"], "price": row["price"]})
        for row in catalog
    ]


def assert_equals_search_text(vectorstore: LFMVectorStore, dense, colbert, k: int = 10) -> None:
    """Top-k ids, scores and texts through LangChain equal ``search_text`` on the same store."""
    for query in QUERIES:
        hits = search_text(vectorstore.store, query, dense=dense, colbert=colbert, k=k)
        assert len(hits) == k
        scored = vectorstore.similarity_search_with_score(query, k=k)
        assert [d.id for d, _ in scored] == [h.key for h in hits]
        np.testing.assert_allclose([s for _, s in scored], [h.score for h in hits], rtol=1e-5)
        assert [d.page_content for d, _ in scored] == [h.payload["text"] for h in hits]


def test_plaid_multivector_add_search_delete_reopen(catalog, minilm_colbert, tmp_path: Path) -> None:
    needs("pylate", "fast_plaid")
    uri = f"plaid://{tmp_path}/lc_plaid"
    vectorstore = LFMVectorStore(uri, colbert=minilm_colbert, kind="multivector")
    try:
        ids = vectorstore.add_documents(documents(catalog))
        assert ids == [row["key"] for row in catalog]
        assert vectorstore.store.count() == len(catalog)
        assert_equals_search_text(vectorstore, None, minilm_colbert)
        # the token vectors stored are the encoder's document side
        first = catalog[0]
        record = next(r for r in vectorstore.store.scan() if r.key == first["key"])
        np.testing.assert_allclose(record.token_vectors, minilm_colbert.encode_documents([first["text"]])[0], atol=1e-5)
        assert record.payload == {"text": first["text"], "sku": first["sku"], "price": first["price"]}
        # adding the same ids again replaces, it does not duplicate
        vectorstore.add_documents(documents(catalog[:3]))
        assert vectorstore.store.count() == len(catalog)
        top = vectorstore.similarity_search(QUERIES[0], k=1)[0].id
        vectorstore.delete([top])
        assert (
            vectorstore.get_by_ids([top]) == []
        )  # (PLAID cannot read stored records back: no get_by_ids of a present id)
        assert top not in [d.id for d in vectorstore.similarity_search(QUERIES[0], k=10)]
        assert vectorstore.store.count() == len(catalog) - 1
    finally:
        vectorstore.close()
    reopened = LFMVectorStore(uri, colbert=minilm_colbert, kind="multivector")
    try:
        assert reopened.store.count() == len(catalog) - 1
        assert top not in [d.id for d in reopened.similarity_search(QUERIES[0], k=10)]
        assert [d.id for d in reopened.get_by_ids([catalog[1]["key"], top])] == [catalog[1]["key"]]
        assert_equals_search_text(reopened, None, minilm_colbert)
    finally:
        reopened.close()


@pytest.mark.parametrize("kind", ["dense", "hybrid"])
def test_qdrant_local_round_trip(catalog, minilm_dense, minilm_colbert, kind: str, tmp_path: Path) -> None:
    needs("lfm_retrieval_qdrant")
    uri = f"qdrant+local://{tmp_path}/lc_{kind}"
    colbert = minilm_colbert if kind == "hybrid" else None
    embedding = LFMEmbeddings.from_encoder(minilm_dense)
    vectorstore = LFMVectorStore.from_documents(documents(catalog), embedding, store=uri, kind=kind, colbert=colbert)
    try:
        assert vectorstore.store.count() == len(catalog)
        assert_equals_search_text(vectorstore, minilm_dense, colbert)
        hits = vectorstore.similarity_search(QUERIES[0], k=5, filter={"price": {"lt": 100}})
        assert hits and all(d.metadata["price"] < 100 for d in hits)
        vectorstore.delete([catalog[0]["key"]])
        assert vectorstore.get_by_ids([catalog[0]["key"]]) == []
    finally:
        vectorstore.close()
    reopened = LFMVectorStore(uri, embedding, colbert=colbert, kind=kind)
    try:
        assert reopened.store.count() == len(catalog) - 1
        assert_equals_search_text(reopened, minilm_dense, colbert)
    finally:
        reopened.close()

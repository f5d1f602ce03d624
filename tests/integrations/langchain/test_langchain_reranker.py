"""LFMColBERTReranker: MaxSim reordering equal to lfm_retrieval.rerank, scores in metadata,
inputs untouched, async, after any retriever (LCEL chain, ContextualCompressionRetriever)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from langchain_core.documents import Document
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough

from langchain_lfm import LFMColBERTReranker, LFMRetriever
from lfm_retrieval import ColBERTEncoder, InvalidTextError, ModelLoadError, rerank

QUERY = "white leather sneakers"


@pytest.fixture(scope="module")
def documents(catalog) -> list[Document]:
    return [Document(page_content=row["text"], metadata={"sku": row["sku"]}, id=row["key"]) for row in catalog[:12]]


def test_equals_core_rerank_on_the_lfm25_layout(colbert_path: Path, documents: list[Document]) -> None:
    reranker = LFMColBERTReranker(model=str(colbert_path), device="cpu", top_n=5)
    reranked = reranker.compress_documents(documents, QUERY)
    expected = rerank(QUERY, [d.page_content for d in documents], reranker.encoder, top_k=5)
    assert [d.id for d in reranked] == [documents[r.index].id for r in expected]
    assert [d.metadata["relevance_score"] for d in reranked] == pytest.approx([r.score for r in expected], rel=1e-6)
    assert all("relevance_score" not in d.metadata for d in documents)  # inputs are not modified
    assert [d.metadata["sku"] for d in reranked] == [documents[r.index].metadata["sku"] for r in expected]


def test_reorders_a_retrievers_results(fill_store, minilm_dense, minilm_colbert: ColBERTEncoder) -> None:
    retriever = LFMRetriever(store=fill_store("memory", "dense"), dense_encoder=minilm_dense, k=8)
    reranker = LFMColBERTReranker.from_encoder(minilm_colbert, top_n=3, score_key="colbert")
    candidates = retriever.invoke(QUERY)
    reranked = reranker.compress_documents(candidates, QUERY)
    assert len(reranked) == 3 and reranked[0].metadata["sku"] == "SKU-10039"
    scores = [d.metadata["colbert"] for d in reranked]
    assert scores == sorted(scores, reverse=True)
    assert all("score" in d.metadata for d in reranked)  # the first-stage score is kept
    assert asyncio.run(reranker.acompress_documents(candidates, QUERY)) == reranked
    # In an LCEL chain after the retriever (the langchain-core way to compose them).
    chain = RunnableParallel(documents=retriever, query=RunnablePassthrough()) | RunnableLambda(
        lambda x: reranker.compress_documents(x["documents"], x["query"])
    )
    assert chain.invoke(QUERY) == reranked
    everything = LFMColBERTReranker.from_encoder(minilm_colbert, top_n=None).compress_documents(candidates, QUERY)
    assert sorted(d.id for d in everything) == sorted(d.id for d in candidates)


def test_inside_contextual_compression_retriever(fill_store, minilm_dense, minilm_colbert: ColBERTEncoder) -> None:
    classic = pytest.importorskip(
        "langchain_classic.retrievers", reason="ContextualCompressionRetriever lives in langchain-classic"
    )
    base = LFMRetriever(store=fill_store("memory", "dense"), dense_encoder=minilm_dense, k=8)
    reranker = LFMColBERTReranker.from_encoder(minilm_colbert, top_n=3)
    retriever = classic.ContextualCompressionRetriever(base_compressor=reranker, base_retriever=base)
    assert retriever.invoke(QUERY) == reranker.compress_documents(base.invoke(QUERY), QUERY)


def test_bad_input(minilm_colbert: ColBERTEncoder, documents: list[Document], tmp_path: Path) -> None:
    reranker = LFMColBERTReranker.from_encoder(minilm_colbert)
    assert reranker.compress_documents([], QUERY) == []
    for query in ("", "  ", None):
        with pytest.raises(InvalidTextError, match="query is"):
            reranker.compress_documents(documents, query)  # type: ignore[arg-type]
    with pytest.raises(InvalidTextError, match=r"documents\[1\] has no text"):
        reranker.compress_documents([documents[0], Document(page_content=" ")], QUERY)
    with pytest.raises(ModelLoadError, match="is not a sentence-transformers"):
        LFMColBERTReranker(model=str(tmp_path))
    with pytest.raises(ValueError, match="top_n"):
        LFMColBERTReranker(model=str(tmp_path), top_n=0)

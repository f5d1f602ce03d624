"""LFMVectorStore beyond the standard suite: the same hits as lfm_retrieval's own text search
(hybrid and multivector, in memory, Qdrant local mode and PostgreSQL), the right side for queries
and documents, filters, MMR, async, and bad input refused whole with nothing stored changed."""

from __future__ import annotations

import asyncio
import itertools
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document
from langchain_core.embeddings import DeterministicFakeEmbedding

from langchain_lfm import LFMEmbeddings, LFMVectorStore
from lfm_retrieval import InvalidTextError
from lfm_retrieval.errors import CollectionMismatchError, InvalidFilterError, InvalidRecordError
from lfm_retrieval.search import search_text
from lfm_retrieval.stores import open_store

QUERY = "white leather sneakers"
_names = itertools.count()


def memory_uri() -> str:
    return f"memory://lc_vs_behaviour_{next(_names)}"


class CountingFake(DeterministicFakeEmbedding):
    """The harness's fake embeddings, counting the texts it encodes."""

    calls: int = 0

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        self.calls += len(texts)
        return super().embed_documents(texts)

    def embed_query(self, text: str) -> list[float]:
        self.calls += 1
        return super().embed_query(text)


class BadVectors(DeterministicFakeEmbedding):
    """Fake embeddings that give NaN for a text containing "nan" and a short vector for one containing "short"."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        vectors = super().embed_documents(texts)
        return [
            [float("nan")] * len(v) if "nan" in t else v[:-1] if "short" in t else v
            for t, v in zip(texts, vectors, strict=True)
        ]


def stored(store) -> dict[str, dict]:
    """Every stored record by key: payload and vectors, read back from the store."""
    return {r.key: {"payload": r.payload, "vector": r.vector, "tokens": r.token_vectors} for r in store.scan()}


# PostgreSQL: a fresh table per kind; one_stack, as the other live-database tests (tests/conftest.py)
@pytest.mark.parametrize("backend", ["memory", "qdrant-local", pytest.param("postgresql", marks=pytest.mark.one_stack)])
@pytest.mark.parametrize("kind", ["hybrid", "multivector"])
def test_top_10_equals_search_text(fill_store, minilm_dense, minilm_colbert, kind, backend) -> None:
    store = fill_store(backend, kind)
    embedding = LFMEmbeddings.from_encoder(minilm_dense) if kind == "hybrid" else None
    vectorstore = LFMVectorStore(store, embedding=embedding, colbert=minilm_colbert)
    dense = minilm_dense if kind == "hybrid" else None
    for query in (QUERY, "shoes for running on trails"):
        hits = search_text(store, query, dense=dense, colbert=minilm_colbert, k=10)
        scored = vectorstore.similarity_search_with_score(query, k=10)
        assert len(hits) == 10
        assert [d.id for d, _ in scored] == [h.key for h in hits]
        np.testing.assert_allclose([s for _, s in scored], [h.score for h in hits], rtol=1e-5)
        assert [d.page_content for d, _ in scored] == [h.payload["text"] for h in hits]
        assert scored[0][0].metadata == {k: v for k, v in hits[0].payload.items() if k != "text"}
        assert [d.id for d in asyncio.run(vectorstore.asimilarity_search(query, k=10))] == [h.key for h in hits]
        assert [d.id for d in vectorstore.as_retriever(search_kwargs={"k": 10}).invoke(query)] == [h.key for h in hits]


@pytest.mark.parametrize("backend", ["memory", "qdrant-edge"])
def test_hybrid_written_through_langchain_equals_search_text(
    catalog, minilm_dense, minilm_colbert, backend, tmp_path: Path
) -> None:
    if backend == "qdrant-edge":
        pytest.importorskip("qdrant_edge")
    uri = memory_uri() if backend == "memory" else f"qdrant+edge://{tmp_path}/hybrid"
    vectorstore = LFMVectorStore.from_texts(
        [row["text"] for row in catalog],
        LFMEmbeddings.from_encoder(minilm_dense),
        [{"sku": row["sku"], "category": row["category"], "price": row["price"]} for row in catalog],
        ids=[row["key"] for row in catalog],
        store=uri,
        kind="hybrid",
        colbert=minilm_colbert,
    )
    hits = search_text(vectorstore.store, QUERY, dense=minilm_dense, colbert=minilm_colbert, k=10)
    assert [d.id for d in vectorstore.similarity_search(QUERY, k=10)] == [h.key for h in hits]
    # the records hold each encoder's document-side vectors
    records = stored(vectorstore.store)
    texts = [row["text"] for row in catalog[:3]]
    np.testing.assert_allclose(
        [records[row["key"]]["vector"] for row in catalog[:3]], minilm_dense.encode_documents(texts), atol=1e-6
    )
    for row, tokens in zip(catalog[:3], minilm_colbert.encode_documents(texts), strict=True):
        np.testing.assert_allclose(records[row["key"]]["tokens"], tokens, atol=1e-6)
    vectorstore.close()


def test_lfm_embeddings_sides(catalog, dense) -> None:
    """Documents are stored with the document side, queries searched with the query side (on the
    tiny LFM2.5-layout checkpoint, whose sides have their own prompts)."""
    rows = catalog[:8]
    vectorstore = LFMVectorStore(memory_uri(), embedding=LFMEmbeddings.from_encoder(dense))
    vectorstore.add_documents([Document(id=r["key"], page_content=r["text"], metadata={"sku": r["sku"]}) for r in rows])
    texts = [r["text"] for r in rows]
    documents = dense.encode_documents(texts)
    records = stored(vectorstore.store)
    np.testing.assert_allclose([records[r["key"]]["vector"] for r in rows], documents, atol=1e-6)
    assert not np.allclose(documents, dense.encode_queries(texts), atol=1e-3)  # the sides differ
    query = dense.encode_queries([QUERY])[0]
    expected = documents @ query
    scored = vectorstore.similarity_search_with_score(QUERY, k=8)
    by_key = {r["key"]: float(s) for r, s in zip(rows, expected, strict=True)}
    for document, score in scored:
        assert score == pytest.approx(by_key[document.id], abs=1e-5)
    assert [d.id for d, _ in scored] == sorted(by_key, key=by_key.get, reverse=True)
    assert [d.id for d in vectorstore.similarity_search_by_vector(query.tolist(), k=8)] == [d.id for d, _ in scored]


def test_the_collection_records_the_model(minilm_dense) -> None:
    uri = memory_uri()
    fake = LFMVectorStore(uri, embedding=DeterministicFakeEmbedding(size=6))
    fake.add_texts(["foo", "bar"], ids=["1", "2"])
    assert open_store(uri).collection_spec().model == "DeterministicFakeEmbedding"
    assert open_store(uri).collection_spec().dimension == 6

    class OtherFake(DeterministicFakeEmbedding):
        pass

    for embedding in (OtherFake(size=6), LFMEmbeddings.from_encoder(minilm_dense)):
        other = LFMVectorStore(uri, embedding=embedding)
        with pytest.raises(CollectionMismatchError, match="DeterministicFakeEmbedding"):
            other.add_texts(["baz"], ids=["3"])
        with pytest.raises(CollectionMismatchError):
            other.similarity_search("foo")
        with pytest.raises(CollectionMismatchError):
            other.delete(["1"])
    assert sorted(stored(fake.store)) == ["1", "2"]


def test_bad_vectors_refuse_the_whole_call() -> None:
    vectorstore = LFMVectorStore(memory_uri(), embedding=BadVectors(size=6))
    vectorstore.add_texts(["foo", "bar"], [{"n": 1}, {"n": 2}], ids=["1", "2"])
    before = stored(vectorstore.store)
    with pytest.raises(InvalidRecordError, match=r"'3'.*NaN"):
        vectorstore.add_texts(["new foo", "nan", "baz"], ids=["1", "3", "4"])
    with pytest.raises(InvalidRecordError, match=r"'4'.*shape \(5,\), expected \(6,\)"):
        asyncio.run(vectorstore.aadd_texts(["new foo", "bar", "short"], ids=["1", "2", "4"]))
    with pytest.raises(CollectionMismatchError, match="dimension: stored 6, asked 5"):
        LFMVectorStore(vectorstore.store, embedding=BadVectors(size=5)).add_texts(["new foo"], ids=["1"])
    after = stored(vectorstore.store)
    assert sorted(after) == ["1", "2"] and after["1"]["payload"] == before["1"]["payload"]
    np.testing.assert_array_equal(after["1"]["vector"], before["1"]["vector"])


def test_bad_documents_refuse_the_whole_call_before_encoding() -> None:
    embedding = CountingFake(size=6)
    vectorstore = LFMVectorStore(memory_uri(), embedding=embedding)
    vectorstore.add_texts(["foo"], ids=["1"])
    embedding.calls = 0
    bad_calls = [
        ({"metadatas": [{"a": 1}, {"text": "clash"}]}, InvalidRecordError, "'text' field"),
        ({"metadatas": [{"a": 1}, {"x": float("nan")}]}, InvalidRecordError, "not JSON"),
        ({"metadatas": [{"a": 1}, {"x": object()}]}, InvalidRecordError, "not JSON"),
        ({"ids": ["2", ""]}, InvalidRecordError, "ids"),
        ({"ids": ["2", 3]}, InvalidRecordError, "ids"),
        ({"ids": ["2"]}, ValueError, "1 ids for 2 texts"),
    ]
    for options, error, message in bad_calls:
        with pytest.raises(error, match=message):
            vectorstore.add_texts(["new foo", "bar"], **options)
    with pytest.raises(InvalidTextError, match="texts\\[1\\]"):
        vectorstore.add_texts(["new foo", "  "])
    with pytest.raises(ValueError, match="ids="):
        vectorstore.delete()
    assert embedding.calls == 0
    assert [(d.id, d.page_content) for d in vectorstore.get_by_ids(["1", "2"])] == [("1", "foo")]


def test_filters(catalog, minilm_dense) -> None:
    embedding = LFMEmbeddings.from_encoder(minilm_dense)
    vectorstore = LFMVectorStore.from_documents(
        [Document(id=r["key"], page_content=r["text"], metadata={"category": r["category"], "price": r["price"]})
         for r in catalog],
        embedding,
        store=memory_uri(),
    )  # fmt: skip
    category = catalog[0]["category"]
    for search in (vectorstore.similarity_search, vectorstore.max_marginal_relevance_search):
        documents = search(QUERY, k=5, filter={"category": category, "price": {"lte": 200}})
        assert documents and all(d.metadata["category"] == category and d.metadata["price"] <= 200 for d in documents)
    expected = [r["key"] for r in catalog if r["category"] == category and r["price"] <= 200]
    found = vectorstore.similarity_search(QUERY, k=len(catalog), filter={"category": category, "price": {"lte": 200}})
    assert sorted(d.id for d in found) == sorted(expected)
    retriever = vectorstore.as_retriever(search_kwargs={"k": 3, "filter": {"category": {"in": [category]}}})
    assert all(d.metadata["category"] == category for d in retriever.invoke(QUERY))
    for bad in ({"price": {"near": 3}}, {"$or": []}, "category = 'x'"):
        with pytest.raises(InvalidFilterError):
            vectorstore.similarity_search(QUERY, filter=bad)
        with pytest.raises(InvalidFilterError):
            asyncio.run(vectorstore.asimilarity_search(QUERY, filter=bad))


def test_mmr_prefers_diverse_documents() -> None:
    embedding = DeterministicFakeEmbedding(size=16)
    vectorstore = LFMVectorStore(memory_uri(), embedding=embedding)
    # "foo" twice (identical vectors) and unrelated texts
    vectorstore.add_texts(["foo", "foo", "bar", "baz"], ids=["a", "b", "c", "d"])
    similar = vectorstore.similarity_search("foo", k=2)
    assert sorted(d.id for d in similar) == ["a", "b"]
    diverse = vectorstore.max_marginal_relevance_search("foo", k=2, fetch_k=4, lambda_mult=0.5)
    assert diverse[0].page_content == "foo" and diverse[1].page_content != "foo"
    assert [d.id for d in asyncio.run(vectorstore.amax_marginal_relevance_search("foo", k=2, fetch_k=4))] == [
        d.id for d in diverse
    ]
    by_vector = vectorstore.max_marginal_relevance_search_by_vector(embedding.embed_query("foo"), k=2, fetch_k=4)
    assert [d.id for d in by_vector] == [d.id for d in diverse]


def test_async_forms(minilm_dense) -> None:
    async def run() -> None:
        vectorstore = await LFMVectorStore.afrom_texts(
            ["red running shoes", "a cordless drill", "a thermos flask"],
            LFMEmbeddings.from_encoder(minilm_dense),
            [{"n": 1}, {"n": 2}, {"n": 3}],
            ids=["shoes", "drill", "flask"],
            store=memory_uri(),
        )
        assert [d.id for d in await vectorstore.aget_by_ids(["flask", "nope", "shoes"])] == ["flask", "shoes"]
        queries = ["sneakers", "power tools", "keep coffee hot"]
        results = await asyncio.gather(*(vectorstore.asimilarity_search(q, k=1) for q in queries))
        assert [r[0].id for r in results] == ["shoes", "drill", "flask"]
        assert results == [vectorstore.similarity_search(q, k=1) for q in queries]
        scored = await vectorstore.asimilarity_search_with_score("sneakers", k=3)
        assert [s for _, s in scored] == pytest.approx(
            [s for _, s in vectorstore.similarity_search_with_score("sneakers", k=3)]
        )
        await vectorstore.adelete(["shoes"])
        assert sorted(d.id for d in await vectorstore.asimilarity_search("sneakers", k=3)) == ["drill", "flask"]
        vector = await vectorstore.embeddings.aembed_query("power tools")
        assert (await vectorstore.asimilarity_search_by_vector(vector, k=1))[0].id == "drill"

    asyncio.run(run())


def test_construction_errors(minilm_colbert, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="needs an embedding="):
        LFMVectorStore(memory_uri())
    with pytest.raises(ValueError, match=r"hybrid LFMVectorStore .* needs a colbert="):
        LFMVectorStore(memory_uri(), DeterministicFakeEmbedding(size=6), kind="hybrid")
    with pytest.raises(ValueError, match=r"dense LFMVectorStore .* takes no colbert="):
        LFMVectorStore(memory_uri(), DeterministicFakeEmbedding(size=6), colbert=minilm_colbert)
    with pytest.raises(ValueError, match=r"multivector LFMVectorStore .* takes no embedding="):
        LFMVectorStore(memory_uri(), DeterministicFakeEmbedding(size=6), colbert=minilm_colbert, kind="multivector")
    with pytest.raises(ValueError, match="kind must be one of"):
        LFMVectorStore(memory_uri(), DeterministicFakeEmbedding(size=6), kind="sparse")
    with pytest.raises(ValueError, match="kind='hybrid'"):
        LFMVectorStore(open_store(memory_uri()), DeterministicFakeEmbedding(size=6), kind="hybrid")
    with pytest.raises(TypeError, match="store="):
        LFMVectorStore.from_texts(["foo"], DeterministicFakeEmbedding(size=6))
    with pytest.raises(TypeError, match="Embeddings"):
        LFMVectorStore(memory_uri(), embedding="minilm")  # type: ignore[arg-type]
    multivector = LFMVectorStore(memory_uri(), colbert=minilm_colbert, kind="multivector")
    with pytest.raises(ValueError, match="dense stores"):
        multivector.similarity_search_by_vector([0.0] * 384)
    with pytest.raises(NotImplementedError, match="multivector"):
        multivector.max_marginal_relevance_search("foo")
    assert multivector.similarity_search("foo") == []  # no collection yet


def test_relevance_scores_are_in_0_1() -> None:
    vectorstore = LFMVectorStore(memory_uri(), embedding=DeterministicFakeEmbedding(size=6))
    vectorstore.add_texts(["foo", "bar"])
    scores = [s for _, s in vectorstore.similarity_search_with_relevance_scores("foo", k=2)]
    assert scores[0] == pytest.approx(1.0) and 0.0 <= scores[1] <= 1.0

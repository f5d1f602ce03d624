"""LFMEmbeddings: the right side per call, equal to the core encoder; bad input and bad models
refused clearly; and correct results inside LangChain's own vector stores."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from langchain_core.vectorstores import InMemoryVectorStore

from langchain_lfm import LFMEmbeddings
from lfm_retrieval import DenseEncoder, InvalidTextError, ModelLoadError

TEXT = "Waterproof trail running shoes"
# Real questions about the sample catalog and the product each must find first.
QUERIES = {
    "cordless drill with two batteries": "SKU-10064",
    "white leather sneakers": "SKU-10039",
    "noise cancelling headphones for flights": "SKU-10001",
    "dotted notebook for bullet journal": "SKU-10068",
}


@pytest.fixture(scope="module")
def embeddings(dense: DenseEncoder) -> LFMEmbeddings:
    return LFMEmbeddings.from_encoder(dense)


@pytest.fixture(scope="module")
def minilm_embeddings(minilm_path: Path) -> LFMEmbeddings:
    """The real all-MiniLM-L6-v2 (no prompts: both sides are plain encode), shared by the vector stores."""
    return LFMEmbeddings(model=str(minilm_path), device="cpu")


def test_sides_equal_the_core_encoder(dense_path: Path, dense: DenseEncoder) -> None:
    embeddings = LFMEmbeddings(model=str(dense_path), device="cpu")  # its own model load
    query, document = embeddings.embed_query(TEXT), embeddings.embed_documents([TEXT])[0]
    assert isinstance(query, list) and all(type(x) is float for x in query)
    np.testing.assert_allclose(query, dense.encode_queries([TEXT])[0], rtol=0, atol=1e-6)
    np.testing.assert_allclose(document, dense.encode_documents([TEXT])[0], rtol=0, atol=1e-6)
    assert not np.allclose(query, document, atol=1e-3)  # "query: " vs "document: " prompt
    assert embeddings.dimension == dense.dimension == len(query)


def test_batch_equals_one_by_one(embeddings: LFMEmbeddings, dense: DenseEncoder) -> None:
    texts = [TEXT, "Cast iron skillet", "Kopfhörer!", "Une gourde en acier inoxydable de 750 ml."]
    batch = embeddings.embed_documents(texts)
    for text, vector in zip(texts, batch, strict=True):
        np.testing.assert_allclose(vector, dense.encode_documents([text])[0], rtol=0, atol=1e-6)


def test_async_equals_sync(embeddings: LFMEmbeddings) -> None:
    async def both() -> tuple[list[float], list[list[float]]]:
        return await asyncio.gather(embeddings.aembed_query(TEXT), embeddings.aembed_documents([TEXT, "Kettle"]))

    query, documents = asyncio.run(both())
    assert query == embeddings.embed_query(TEXT)
    assert documents == embeddings.embed_documents([TEXT, "Kettle"])


def test_huggingface_embeddings_defaults_ignore_the_prompts(dense_path: Path, embeddings: LFMEmbeddings) -> None:
    """The failure this package fixes: LangChain's HuggingFaceEmbeddings calls plain
    ``SentenceTransformer.encode`` on both sides, which applies no prompt, so neither side
    gets the ``query: `` / ``document: `` prompt stored with the model."""
    from langchain_huggingface import HuggingFaceEmbeddings

    hf = HuggingFaceEmbeddings(
        model_name=str(dense_path), model_kwargs={"device": "cpu"}, encode_kwargs={"normalize_embeddings": True}
    )
    assert hf._client.prompts == {"query": "query: ", "document": "document: "}  # stored, but unused
    hf_query, hf_document = np.array(hf.embed_query(TEXT)), np.array(hf.embed_documents([TEXT])[0])
    query, document = np.array(embeddings.embed_query(TEXT)), np.array(embeddings.embed_documents([TEXT])[0])
    assert not np.allclose(hf_query, query, atol=1e-3)  # query side: "query: " missing
    assert not np.allclose(hf_document, document, atol=1e-3)  # document side: "document: " missing
    np.testing.assert_allclose(hf_query, hf_document, rtol=0, atol=1e-6)  # both sides the same vector
    # Exactly the prompt is the difference: with prompt_name per side it matches ours.
    fixed = HuggingFaceEmbeddings(
        model_name=str(dense_path),
        model_kwargs={"device": "cpu"},
        encode_kwargs={"normalize_embeddings": True, "prompt_name": "document"},
        query_encode_kwargs={"normalize_embeddings": True, "prompt_name": "query"},
    )
    np.testing.assert_allclose(fixed.embed_query(TEXT), query, rtol=0, atol=1e-5)
    np.testing.assert_allclose(fixed.embed_documents([TEXT])[0], document, rtol=0, atol=1e-5)


@pytest.mark.parametrize(
    ("query", "message"),
    [("", "empty or only whitespace"), ("   \n", "empty or only whitespace"), (None, "is None"), (7, "is int")],
)
def test_bad_queries_raise_a_clear_error(embeddings: LFMEmbeddings, query: object, message: str) -> None:
    with pytest.raises(InvalidTextError, match=message):
        embeddings.embed_query(query)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=message):  # InvalidTextError is a ValueError
        asyncio.run(embeddings.aembed_query(query))  # type: ignore[arg-type]


def test_bad_documents_raise_naming_their_position(embeddings: LFMEmbeddings) -> None:
    assert embeddings.embed_documents([]) == []
    with pytest.raises(InvalidTextError, match=r"texts\[1\] is empty"):
        embeddings.embed_documents(["fine", "  "])
    with pytest.raises(InvalidTextError, match=r"texts\[0\] is None"):
        embeddings.embed_documents([None])  # type: ignore[list-item]
    with pytest.raises(InvalidTextError, match="not one string"):
        embeddings.embed_documents(TEXT)  # type: ignore[arg-type]


def test_bad_model_is_refused_at_construction_naming_it(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    junk = tmp_path / "junk"
    junk.mkdir()
    (junk / "weights.bin").write_bytes(b"\x00" * 64)
    (junk / "notes.txt").write_text("not a model")
    for folder in (empty, junk):
        with pytest.raises(ModelLoadError, match=f"'{folder}' is not a sentence-transformers"):
            LFMEmbeddings(model=str(folder))
    with pytest.raises(ModelLoadError, match=f"No model at '{tmp_path / 'missing'}'"):
        LFMEmbeddings(model=str(tmp_path / "missing"))
    with pytest.raises(ValueError, match="DenseEncoder has no argument 'normalise'"):
        LFMEmbeddings(model=str(junk.parent), encoder_kwargs={"normalise": True})


def test_default_is_lfm25_and_loads_lazily() -> None:
    embeddings = LFMEmbeddings()  # no download attempted until first use
    assert embeddings.model == "LiquidAI/LFM2.5-Embedding-350M"
    assert embeddings._encoder is None


@pytest.fixture(scope="module")
def corpus(catalog) -> list[dict]:
    """The products the queries look for, their near neighbours and a few others (14)."""
    wanted = set(QUERIES.values()) | {"SKU-10002", "SKU-10040", "SKU-10065"}
    others = [row for row in catalog if row["sku"] not in wanted]
    return [row for row in catalog if row["sku"] in wanted] + others[::3]


def _keys(documents) -> list[str]:
    return [document.metadata["sku"] for document in documents]


def test_inside_langchain_in_memory_vector_store(minilm_embeddings: LFMEmbeddings, corpus) -> None:
    embeddings = minilm_embeddings
    store = InMemoryVectorStore(embedding=embeddings)
    store.add_texts([row["text"] for row in corpus], metadatas=[{"sku": row["sku"]} for row in corpus])
    for query, sku in QUERIES.items():
        assert _keys(store.similarity_search(query, k=3))[0] == sku, query
    results = asyncio.run(store.asimilarity_search("white leather sneakers", k=3))
    assert _keys(results)[0] == "SKU-10039"


def test_inside_langchain_qdrant_local_mode(minilm_embeddings: LFMEmbeddings, corpus, tmp_path: Path) -> None:
    from langchain_qdrant import QdrantVectorStore

    embeddings = minilm_embeddings
    store = QdrantVectorStore.from_texts(
        [row["text"] for row in corpus],
        embeddings,
        metadatas=[{"sku": row["sku"], "price": row["price"]} for row in corpus],
        path=str(tmp_path / "qdrant"),
        collection_name="catalog",
    )
    try:
        for query, sku in QUERIES.items():
            assert _keys(store.similarity_search(query, k=3))[0] == sku, query
        # The stored vectors are the document side, the query the query side (MiniLM has no prompts,
        # so here both are plain encode): the top score is the cosine of our two vectors.
        top, score = store.similarity_search_with_score("cordless drill with two batteries", k=1)[0]
        query_vector = embeddings.embed_query("cordless drill with two batteries")
        expected = np.dot(query_vector, embeddings.embed_documents([top.page_content])[0])
        assert score == pytest.approx(float(expected), abs=1e-4)
    finally:
        store.client.close()


def test_inside_langchain_postgres_pgvector(minilm_embeddings: LFMEmbeddings, corpus, postgres_dsn: str) -> None:
    pytest.importorskip("langchain_postgres")
    from langchain_postgres import PGVector

    embeddings = minilm_embeddings
    connection = postgres_dsn.replace("postgresql://", "postgresql+psycopg://", 1)
    store = PGVector(embeddings, connection=connection, collection_name="langchain_lfm_catalog", use_jsonb=True)
    try:
        store.add_texts([row["text"] for row in corpus], metadatas=[{"sku": row["sku"]} for row in corpus])
        for query, sku in QUERIES.items():
            assert _keys(store.similarity_search(query, k=3))[0] == sku, query
        filtered = store.similarity_search("drill", k=5, filter={"sku": {"$in": ["SKU-10065", "SKU-10039"]}})
        assert _keys(filtered)[0] == "SKU-10065"
    finally:
        store.delete_collection()
        store._engine.dispose()

"""LFMEmbedding inside LlamaIndex's own indexes: SimpleVectorStore, QdrantVectorStore, PGVectorStore (real MiniLM)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest
from llama_index.core import StorageContext, VectorStoreIndex
from llama_index.core.storage.kvstore import SimpleKVStore
from llamaindex_helpers import catalog_nodes, clear_queries

from lfm_retrieval import cosine_scores
from llama_index.embeddings.lfm import LFMEmbedding

K = 3


@pytest.fixture(scope="module")
def minilm_embed(minilm_path: Path) -> LFMEmbedding:
    # LlamaIndex's own embeddings cache (side-keyed by LFMEmbedding): the catalog is encoded once
    # for all three indexes, and queries never hit document entries.
    return LFMEmbedding(str(minilm_path), device="cpu", embeddings_cache=SimpleKVStore())


@pytest.fixture(scope="module")
def expected(minilm_embed: LFMEmbedding) -> dict[str, list[tuple[str, float]]]:
    """Exact cosine top-K per clear query over the catalog's document vectors (the reference).

    The document vectors come through LFMEmbedding (filling its cache, so the indexes below reuse
    them; test_llamaindex_embedding shows they equal the core encoder's)."""
    nodes = catalog_nodes()
    documents = np.float32(minilm_embed.get_text_embedding_batch([node.text for node in nodes]))
    out = {}
    for qid, (text, _) in clear_queries().items():
        scores = cosine_scores(minilm_embed.encoder.encode_queries([text]), documents)[0]
        order = np.argsort(-scores, kind="stable")[:K]
        out[qid] = [(nodes[i].metadata["key"], float(scores[i])) for i in order]
    return out


def check_index(index: VectorStoreIndex, expected: dict[str, list[tuple[str, float]]], *, check_async: bool) -> None:
    retriever = index.as_retriever(similarity_top_k=K)
    for qid, (text, relevant) in clear_queries().items():
        results = retriever.retrieve(text)
        keys = [result.node.metadata["key"] for result in results]
        assert keys[0].split("/")[0] in relevant, (qid, text, keys)  # the right product comes first
        assert keys == [key for key, _ in expected[qid]], qid
        np.testing.assert_allclose([r.score for r in results], [s for _, s in expected[qid]], atol=1e-4)
    if not check_async:
        return
    text = clear_queries()["q15"][0]
    results = asyncio.run(retriever.aretrieve(text))
    assert [r.node.metadata["key"] for r in results] == [key for key, _ in expected["q15"]]


def test_simple_vector_store(minilm_embed: LFMEmbedding, expected: dict) -> None:
    index = VectorStoreIndex(catalog_nodes(), embed_model=minilm_embed)
    check_index(index, expected, check_async=True)


@pytest.mark.filterwarnings("ignore:Payload indexes have no effect:UserWarning")
def test_qdrant_vector_store_local_mode(minilm_embed: LFMEmbedding, expected: dict, tmp_path: Path) -> None:
    from llama_index.vector_stores.qdrant import QdrantVectorStore
    from qdrant_client import QdrantClient

    client = QdrantClient(path=str(tmp_path / "qdrant"))
    try:
        store = QdrantVectorStore(client=client, collection_name="products")
        index = VectorStoreIndex(
            catalog_nodes(), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=minilm_embed
        )
        check_index(index, expected, check_async=False)  # async needs a second client: local mode locks
        assert client.count("products").count == len(catalog_nodes())
    finally:
        client.close()


def test_pgvector_store_live_postgres(
    minilm_embed: LFMEmbedding,
    expected: dict,
    postgres_dsn: str,
) -> None:
    from llama_index.vector_stores.postgres import PGVectorStore

    dsn = postgres_dsn.split("://", 1)[1]
    store = PGVectorStore(
        connection_string=f"postgresql+psycopg2://{dsn}",
        async_connection_string=f"postgresql+asyncpg://{dsn}",
        table_name="llamaindex_lfm_products",
        embed_dim=minilm_embed.dimension,
    )
    try:
        index = VectorStoreIndex(
            catalog_nodes(), storage_context=StorageContext.from_defaults(vector_store=store), embed_model=minilm_embed
        )
        check_index(index, expected, check_async=True)
    finally:
        asyncio.run(store.close())

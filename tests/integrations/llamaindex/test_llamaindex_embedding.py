"""LFMEmbedding: the query side for queries, the document side for nodes; what HuggingFaceEmbedding gets wrong."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.storage.kvstore import SimpleKVStore

from lfm_retrieval import DenseEncoder, InvalidTextError, ModelLoadError
from llama_index.embeddings.lfm import LFMEmbedding

TEXTS = [
    "Waterproof trail running shoes",
    "Cast iron skillet, 28 cm",
    "Kabellose Kopfhörer mit Geräuschunterdrückung",
    "Stainless steel water bottle that keeps drinks cold for 24 hours",
    "ergonomic office chair",
]


def assert_close(got: np.ndarray, expected: np.ndarray) -> None:
    """Equal within float32 rounding: a text's vector alone and inside a padded batch differ by ulps."""
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


@pytest.fixture(scope="module")
def embed(dense_path: Path) -> LFMEmbedding:
    return LFMEmbedding(str(dense_path), device="cpu", embed_batch_size=2)


def test_defaults_name_lfm25() -> None:
    fields = LFMEmbedding.model_fields
    assert fields["model_name"].default == "LiquidAI/LFM2.5-Embedding-350M"
    assert fields["normalize"].default is True
    assert LFMEmbedding.class_name() == "LFMEmbedding"


def test_query_and_text_methods_equal_the_core_sides(embed: LFMEmbedding, dense: DenseEncoder) -> None:
    queries, documents = dense.encode_queries(TEXTS), dense.encode_documents(TEXTS)
    for i, text in enumerate(TEXTS[:3]):
        assert_close(np.float32(embed.get_query_embedding(text)), queries[i])
        assert_close(np.float32(embed.get_text_embedding(text)), documents[i])
    # batches of embed_batch_size=2 (3 LlamaIndex batches) give the same vectors as one by one
    assert_close(np.float32(embed.get_text_embedding_batch(TEXTS)), documents)
    # and the two sides differ for the same string
    assert not np.allclose(embed.get_query_embedding(TEXTS[0]), embed.get_text_embedding(TEXTS[0]))
    assert len(embed.get_query_embedding(TEXTS[0])) == embed.dimension == dense.dimension


def test_async_methods_equal_the_core_sides(embed: LFMEmbedding, dense: DenseEncoder) -> None:
    queries, documents = dense.encode_queries(TEXTS), dense.encode_documents(TEXTS)

    async def run() -> tuple:
        return await asyncio.gather(
            embed.aget_query_embedding(TEXTS[1]),
            embed.aget_text_embedding(TEXTS[1]),
            embed.aget_text_embedding_batch(TEXTS),
        )

    query, text, batch = asyncio.run(run())
    assert_close(np.float32(query), queries[1])
    assert_close(np.float32(text), documents[1])
    assert_close(np.float32(batch), documents)
    agg = embed.get_agg_embedding_from_queries(TEXTS[:2])  # LlamaIndex's multi-query path: query side
    np.testing.assert_allclose(agg, queries[:2].mean(axis=0), atol=1e-6)


def test_huggingface_embedding_drops_the_prompts_that_lfm_embedding_applies(
    dense_path: Path, embed: LFMEmbedding, dense: DenseEncoder
) -> None:
    """The failure this package fixes, on the same checkpoint (its prompts are query: / document:)."""
    from llama_index.embeddings.huggingface import HuggingFaceEmbedding
    from sentence_transformers import SentenceTransformer

    stored = json.loads((dense_path / "config_sentence_transformers.json").read_text())["prompts"]
    assert stored == {"query": "query: ", "document": "document: "}
    hf = HuggingFaceEmbedding(model_name=str(dense_path), device="cpu")  # its defaults
    text = TEXTS[0]
    right_query, right_document = dense.encode_queries([text])[0], dense.encode_documents([text])[0]
    hf_query, hf_document = np.float32(hf.get_query_embedding(text)), np.float32(hf.get_text_embedding(text))
    # HuggingFaceEmbedding's text side is the text with no prompt at all: "document: " is dropped
    no_prompt = SentenceTransformer(str(dense_path), device="cpu").encode([text], normalize_embeddings=True)[0]
    np.testing.assert_allclose(hf_document, no_prompt, atol=1e-6)
    assert np.abs(hf_document - right_document).max() > 1e-2
    # depending on the sentence-transformers version, its query side is right (5.x) or also unprompted (6.x)
    assert np.abs(hf_query - right_query).max() > 1e-2 or np.allclose(hf_query, right_query, atol=1e-6)
    # ours: both sides right
    np.testing.assert_array_equal(np.float32(embed.get_query_embedding(text)), right_query)
    np.testing.assert_array_equal(np.float32(embed.get_text_embedding(text)), right_document)


def test_llamaindex_cache_keeps_sides_apart(dense_path: Path, dense: DenseEncoder) -> None:
    """LlamaIndex's embeddings_cache keys by text alone; ours adds the side, so a document vector is
    never served for a query of the same text (and vice versa)."""
    cache = SimpleKVStore()
    cached = LFMEmbedding(str(dense_path), device="cpu", embeddings_cache=cache)
    text = TEXTS[2]
    document = cached.get_text_embedding(text)
    query = cached.get_query_embedding(text)
    np.testing.assert_array_equal(np.float32(document), dense.encode_documents([text])[0])
    np.testing.assert_array_equal(np.float32(query), dense.encode_queries([text])[0])
    # both are cached, in separate collections, and served from there the second time
    stored = {side: cache.get_all(f"embeddings/lfm/{dense_path.name}/{side}") for side in ("query", "document")}
    assert [list(v) for v in stored["query"][text].values()] == [query]
    assert [list(v) for v in stored["document"][text].values()] == [document]
    assert cache.get_all("embeddings") == {}  # nothing under LlamaIndex's shared, side-less key
    assert cached.get_query_embedding(text) == query
    assert cached.get_text_embedding_batch([text]) == [document]
    assert asyncio.run(cached.aget_query_embedding(text)) == query


def test_normalize_false_keeps_the_raw_vector(dense_path: Path, dense: DenseEncoder) -> None:
    raw = LFMEmbedding(str(dense_path), device="cpu", normalize=False)
    vector = np.float32(raw.get_text_embedding(TEXTS[0]))
    assert abs(float(np.linalg.norm(vector)) - 1.0) > 1e-3
    np.testing.assert_allclose(vector / np.linalg.norm(vector), dense.encode_documents([TEXTS[0]])[0], atol=1e-5)


def test_wraps_an_existing_encoder(dense: DenseEncoder) -> None:
    shared = LFMEmbedding(encoder=dense)
    assert shared.encoder is dense and shared.model_name == dense.model_name
    np.testing.assert_array_equal(np.float32(shared.get_query_embedding(TEXTS[3])), dense.encode_queries([TEXTS[3]])[0])


@pytest.mark.parametrize("bad", ["", "   ", None, 7])
def test_bad_queries_are_clear_errors(embed: LFMEmbedding, bad: object) -> None:
    with pytest.raises(InvalidTextError, match="query is"):
        embed.get_query_embedding(bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidTextError, match="query is"):
        asyncio.run(embed.aget_query_embedding(bad))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", ["", "  \n", None])
def test_bad_texts_are_clear_errors_naming_the_position(embed: LFMEmbedding, bad: object) -> None:
    with pytest.raises(InvalidTextError, match=r"texts\[1\]"):
        embed.get_text_embedding_batch(["fine", bad])  # type: ignore[list-item]
    with pytest.raises(InvalidTextError, match="cannot embed a document"):
        embed.get_text_embedding(bad)  # type: ignore[arg-type]


def test_model_that_is_not_sentence_transformers_is_named(tmp_path: Path) -> None:
    folder = tmp_path / "not-a-model"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"\0")
    with pytest.raises(ModelLoadError, match="not-a-model"):
        LFMEmbedding(str(folder), device="cpu")
    with pytest.raises(ModelLoadError, match="missing-model"):
        LFMEmbedding(str(tmp_path / "missing-model"), device="cpu")

"""DenseEncoder: the reference library's vectors, the right side, exact batches, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from lfm_retrieval import DenseEncoder, InvalidTextError, ModelLoadError
from lfm_retrieval.testing import build_dense_checkpoint
from sample_texts import TEXTS


@pytest.fixture(scope="module")
def reference(dense_path):
    return SentenceTransformer(str(dense_path), device="cpu")


def _one_by_one(encode, texts):
    return np.stack([encode([t], normalize_embeddings=True)[0] for t in texts])


def test_sides_equal_sentence_transformers(dense, reference):
    queries = dense.encode_queries(TEXTS)
    documents = dense.encode_documents(TEXTS)
    assert queries.dtype == np.float32 and queries.shape == (len(TEXTS), 64)
    assert np.abs(queries - _one_by_one(reference.encode_query, TEXTS)).max() < 1e-5
    assert np.abs(documents - _one_by_one(reference.encode_document, TEXTS)).max() < 1e-5
    assert np.allclose(np.linalg.norm(queries, axis=1), 1, atol=1e-5)
    assert np.abs(queries - documents).max(axis=1).min() > 1e-3, "query and document sides must differ"


def test_the_prompts_are_the_models_own(dense):
    assert dense.prompts == {"query": "query: ", "document": "document: "}


def test_a_text_gets_the_same_vector_alone_and_in_a_mixed_batch(dense):
    alone = np.stack([dense.encode_documents([t])[0] for t in TEXTS])
    assert np.abs(dense.encode_documents(TEXTS) - alone).max() < 1e-5


def test_plain_batched_sentence_transformers_is_batch_dependent(dense, reference):
    """The failure the encoder's inert padding avoids (see test_backbone.test_padding_leaks_into_real_tokens)."""
    batched = reference.encode_document(TEXTS, batch_size=len(TEXTS), normalize_embeddings=True)
    assert np.abs(batched - dense.encode_documents(TEXTS)).max() > 1e-4


def test_streaming_reads_lazily_and_keeps_order(dense_path):
    encoder = DenseEncoder(str(dense_path), device="cpu", chunk_size=2)
    pulled = []

    def texts():
        for text in TEXTS:
            pulled.append(text)
            yield text

    stream = encoder.stream_documents(texts())
    first = next(stream)
    assert len(pulled) == 2, "only the first chunk is read before the first vector"
    rest = list(stream)
    assert np.abs(np.stack([first, *rest]) - encoder.encode_documents(TEXTS)).max() < 1e-6


def test_empty_input_gives_an_empty_result(dense):
    assert dense.encode_queries([]).shape == (0, 64)
    assert dense.encode_documents(iter([])).shape == (0, 64)


@pytest.mark.parametrize(("bad", "kind"), [(None, "None"), (3, "int"), ("", "empty"), ("  \n", "whitespace")])
def test_bad_texts_are_named_by_position(dense, bad, kind):
    with pytest.raises(InvalidTextError, match=rf"texts\[2\].*{kind}"):
        dense.encode_documents(["ok", "fine", bad])


def test_a_single_string_is_refused(dense):
    with pytest.raises(InvalidTextError, match="single string"):
        dense.encode_queries("not a list")


def test_a_huge_text_is_truncated_and_counted(dense_path):
    encoder = DenseEncoder(str(dense_path), device="cpu")
    vectors = encoder.encode_documents(["short one", "word " * 20_000])
    assert vectors.shape == (2, 64) and np.isfinite(vectors).all()
    assert encoder.stats.truncated == 1 and encoder.stats.texts == 2
    assert 512 < encoder.stats.tokens < 512 + 20


def test_an_unknown_path_names_the_path(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(ModelLoadError, match=r"no-such-model.*no weights"):
        DenseEncoder(str(missing))


def test_a_folder_that_is_not_a_sentence_transformers_model_is_named(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(ModelLoadError, match=r"not a sentence-transformers"):
        DenseEncoder(str(tmp_path))


def test_an_unreachable_hub_id_names_the_id(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError, match=r"LiquidAI/LFM2.5-Embedding-350M.*no weights"):
        DenseEncoder()


def test_an_lfm25_model_without_prompts_is_an_error(tmp_path):
    path = build_dense_checkpoint(tmp_path / "no-prompts", prompts=False)
    with pytest.raises(ModelLoadError, match="declares no query / document prompt"):
        DenseEncoder(str(path))


def test_a_model_without_prompts_works_with_one_warning(minilm_path, caplog):
    with caplog.at_level(logging.WARNING, logger="lfm_retrieval"):
        encoder = DenseEncoder(str(minilm_path), device="cpu")
    assert sum("declares no" in r.message for r in caplog.records) == 1
    reference = SentenceTransformer(str(minilm_path), device="cpu")
    expected = _one_by_one(reference.encode, TEXTS)
    assert np.abs(encoder.encode_documents(TEXTS) - expected).max() < 1e-5
    assert np.abs(encoder.encode_queries(TEXTS) - expected).max() < 1e-5


def test_int8_agrees_with_float32_on_real_text(minilm_path):
    fp32 = DenseEncoder(str(minilm_path), device="cpu").encode_documents(TEXTS)
    int8_encoder = DenseEncoder(str(minilm_path), quantize="int8")
    int8 = int8_encoder.encode_documents(TEXTS)
    assert not [m for m in int8_encoder.model.modules() if type(m) is torch.nn.Linear], "all Linear layers are int8"
    assert float(np.mean(np.sum(fp32 * int8, axis=1))) >= 0.99


def test_bfloat16_runs_and_returns_float32(minilm_path):
    fp32 = DenseEncoder(str(minilm_path), device="cpu").encode_documents(TEXTS)
    bf16 = DenseEncoder(str(minilm_path), device="cpu", dtype=torch.bfloat16).encode_documents(TEXTS)
    assert bf16.dtype == np.float32
    assert float(np.mean(np.sum(fp32 * bf16, axis=1))) >= 0.98


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
def test_cuda_matches_cpu(dense_path):
    cpu = DenseEncoder(str(dense_path), device="cpu").encode_documents(TEXTS)
    gpu = DenseEncoder(str(dense_path), device="cuda").encode_documents(TEXTS)
    assert np.abs(cpu - gpu).max() < 1e-3


def test_int8_refuses_a_gpu(dense_path):
    with pytest.raises(ValueError, match="int8"):
        DenseEncoder(str(dense_path), device="cuda", quantize="int8")


def test_normalize_false_gives_the_raw_pooled_vector(dense_path):
    from lfm_retrieval import DenseEncoder

    raw = DenseEncoder(str(dense_path), device="cpu", normalize=False).encode_documents(["a pan", "shoes"])
    unit = DenseEncoder(str(dense_path), device="cpu").encode_documents(["a pan", "shoes"])
    assert not np.allclose(np.linalg.norm(raw, axis=1), 1.0)
    assert np.allclose(raw / np.linalg.norm(raw, axis=1, keepdims=True), unit, atol=1e-6)

"""Cosine, MaxSim and index-free reranking."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import sentence_transformers

from lfm_retrieval import ColBERTEncoder, DenseEncoder, cosine_scores, maxsim_scores, rerank
from lfm_retrieval.errors import ModelLoadError

rng = np.random.default_rng(0)


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def test_cosine_equals_the_formula():
    q, d = rng.normal(size=(3, 8)), rng.normal(size=(5, 8))
    expected = [[a @ b / np.linalg.norm(a) / np.linalg.norm(b) for b in d] for a in q]
    assert np.allclose(cosine_scores(q, d), expected, atol=1e-5)


def test_maxsim_equals_a_loop_whatever_the_block_size():
    queries = [_unit(rng.normal(size=(n, 16))) for n in (4, 32)]
    docs = [_unit(rng.normal(size=(n, 16))) for n in (1, 7, 30, 2, 12)]
    expected = [[sum(max(float(t @ u) for u in d) for t in q) for d in docs] for q in queries]
    for block_tokens in (1, 10, 1 << 20):
        assert np.allclose(maxsim_scores(queries, docs, block_tokens=block_tokens), expected, atol=1e-4)


def test_maxsim_refuses_empty_or_mixed_width_token_vectors():
    q = [rng.normal(size=(4, 16))]
    with pytest.raises(ValueError, match="one width"):
        maxsim_scores(q, [rng.normal(size=(3, 8))])
    with pytest.raises(ValueError, match="non-empty"):
        maxsim_scores(q, [np.zeros((0, 16))])
    assert maxsim_scores(q, []).shape == (1, 0)


def test_cosine_refuses_a_dimension_mismatch():
    with pytest.raises(ValueError, match="dimension mismatch"):
        cosine_scores(np.ones(4), np.ones((2, 5)))


CANDIDATES = [
    "The warranty covers manufacturing defects for two years.",
    "Our trail running shoes have a waterproof upper and a grippy sole.",
    "Stainless steel bottles keep drinks cold for 24 hours.",
    "Noise-cancelling wireless headphones with 30 hours of battery.",
]


def test_dense_rerank_puts_the_relevant_candidate_first(minilm_path):
    encoder = DenseEncoder(str(minilm_path), device="cpu")
    ranked = rerank("headphones with long battery life", CANDIDATES, encoder)
    assert ranked[0].index == 3
    assert [r.score for r in ranked] == sorted((r.score for r in ranked), reverse=True)
    vectors = encoder.encode_documents(CANDIDATES)
    assert rerank("headphones with long battery life", vectors, encoder, top_k=2) == ranked[:2]


def test_colbert_without_a_backend_is_a_clear_error(colbert_path):
    if importlib.util.find_spec("pylate") or hasattr(sentence_transformers, "MultiVectorEncoder"):
        pytest.skip("a ColBERT backend is installed (PyLate or sentence-transformers >= 6)")
    with pytest.raises(ModelLoadError, match=r"PyLate .* or sentence-transformers >= 6\.0"):
        ColBERTEncoder(str(colbert_path), device="cpu")


def test_colbert_rerank_orders_by_maxsim(colbert_path):
    if not (importlib.util.find_spec("pylate") or hasattr(sentence_transformers, "MultiVectorEncoder")):
        pytest.skip("no ColBERT backend: PyLate or sentence-transformers >= 6 (core alone at its lowest versions)")
    encoder = ColBERTEncoder(str(colbert_path), device="cpu")
    ranked = rerank("waterproof shoes", CANDIDATES, encoder)
    query = encoder.encode_queries(["waterproof shoes"])
    expected = maxsim_scores(query, encoder.encode_documents(CANDIDATES))[0]
    assert [r.index for r in ranked] == list(np.argsort(-expected, kind="stable"))
    assert np.allclose([r.score for r in ranked], np.sort(expected)[::-1], atol=1e-5)
    assert rerank("anything", [], encoder) == []


def test_exact_maxsim_index_equals_maxsim_scores():
    from lfm_retrieval.scoring import ExactMaxSim

    rng = np.random.default_rng(3)
    docs = [rng.normal(size=(int(rng.integers(1, 30)), 8)).astype(np.float32) for _ in range(200)]
    queries = [rng.normal(size=(5, 8)).astype(np.float32) for _ in range(3)]
    index = ExactMaxSim(docs, block_tokens=64)  # many blocks, some smaller than a document
    for query in queries:
        expected = maxsim_scores([query], docs)[0]
        assert np.allclose(index.scores(query), expected, atol=1e-4)
        assert [r.index for r in index.search(query, k=7)] == list(np.argsort(-expected, kind="stable")[:7])


def test_exact_maxsim_on_a_torch_device_equals_numpy():
    """The device path (torch; here on the CPU, on CUDA in benchmarks/gpu) gives NumPy's scores."""
    from lfm_retrieval.scoring import ExactMaxSim

    rng = np.random.default_rng(4)
    docs = [rng.normal(size=(int(rng.integers(1, 30)), 8)).astype(np.float32) for _ in range(200)]
    on_numpy, on_torch = ExactMaxSim(docs, block_tokens=64), ExactMaxSim(docs, block_tokens=50, device="cpu")
    for _ in range(3):
        query = rng.normal(size=(5, 8)).astype(np.float32)
        assert np.allclose(on_torch.scores(query), on_numpy.scores(query), atol=1e-4)
        assert [r.index for r in on_torch.search(query, k=7)] == [r.index for r in on_numpy.search(query, k=7)]

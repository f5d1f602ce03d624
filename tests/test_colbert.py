"""ColBERTEncoder: the reference libraries' token vectors, prefixes, expansion, skiplist, bad input."""

from __future__ import annotations

import importlib.util
import os
import string
from pathlib import Path

import numpy as np
import pytest

from lfm_retrieval import ColBERTEncoder, InvalidTextError, ModelLoadError
from sample_texts import TEXTS

HAS_PYLATE = importlib.util.find_spec("pylate") is not None
try:
    from sentence_transformers import MultiVectorEncoder
except ImportError:  # sentence-transformers < 6
    MultiVectorEncoder = None

BACKENDS = [b for b, ok in (("pylate", HAS_PYLATE), ("sentence-transformers", MultiVectorEncoder)) if ok]


@pytest.fixture(scope="module", params=BACKENDS)
def colbert(request, colbert_path):
    return ColBERTEncoder(str(colbert_path), backend=request.param, device="cpu", batch_size=4)


def _assert_same(ours: list[np.ndarray], reference: list[np.ndarray]) -> None:
    assert len(ours) == len(reference)
    for a, b in zip(ours, reference, strict=True):
        assert a.shape == b.shape
        assert np.abs(a - b).max() < 1e-5


@pytest.mark.skipif(not HAS_PYLATE, reason="PyLate is part of the full stack")
def test_vectors_equal_pylate(colbert_path):
    from pylate.models import ColBERT

    reference = ColBERT(str(colbert_path), device="cpu")
    ours = ColBERTEncoder(str(colbert_path), backend="pylate", device="cpu")
    one = [np.asarray(reference.encode([t], is_query=True)[0]) for t in TEXTS]
    _assert_same(ours.encode_queries(TEXTS), one)
    one = [np.asarray(reference.encode([t], is_query=False)[0]) for t in TEXTS]
    _assert_same(ours.encode_documents(TEXTS), one)


@pytest.mark.skipif(MultiVectorEncoder is None, reason="MultiVectorEncoder needs sentence-transformers >= 6")
def test_vectors_equal_multivector_encoder(colbert_path):
    reference = MultiVectorEncoder(str(colbert_path), device="cpu")
    ours = ColBERTEncoder(str(colbert_path), backend="sentence-transformers", device="cpu")
    one = [np.asarray(reference.encode_query([t], convert_to_numpy=True)[0]) for t in TEXTS]
    _assert_same(ours.encode_queries(TEXTS), one)
    one = [np.asarray(reference.encode_document([t], convert_to_numpy=True)[0]) for t in TEXTS]
    _assert_same(ours.encode_documents(TEXTS), one)


def test_vectors_are_the_same_on_both_stacks(colbert):
    """The test command runs the latest stack first (MultiVectorEncoder), which saves its
    vectors; the full stack (PyLate) compares against them. Both build the same seeded checkpoint."""
    folder = os.environ.get("LFM_CROSS_STACK_DIR")
    if not folder:
        pytest.skip("LFM_CROSS_STACK_DIR is set by the test command, which runs both stacks")
    vectors = colbert.encode_queries(TEXTS) + colbert.encode_documents(TEXTS)
    saved = Path(folder) / "colbert-vectors.npz"
    if colbert.backend == "sentence-transformers":
        np.savez(saved, *vectors)
        return
    if not saved.exists():
        pytest.skip("the latest stack has not run in this test command")
    other = np.load(saved)
    _assert_same(vectors, [other[f"arr_{i}"] for i in range(len(vectors))])


def test_queries_are_expanded_to_32_tokens_and_normalised(colbert):
    queries = colbert.encode_queries(TEXTS)
    assert all(q.shape == (32, 128) and q.dtype == np.float32 for q in queries)
    assert all(np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5) for q in queries)


def test_documents_drop_skiplist_tokens(colbert):
    tokenizer = colbert.model.tokenizer
    punctuation = set(tokenizer.convert_tokens_to_ids(list(string.punctuation)))
    for text, doc in zip(TEXTS, colbert.encode_documents(TEXTS), strict=True):
        ids = tokenizer(text)["input_ids"]
        kept = [i for i in ids if i not in punctuation]
        assert doc.shape == (len(kept) + 1, 128), "BOS, the [D] prefix and every non-punctuation token"
        assert len(kept) < len(ids) or not punctuation & set(ids)


def test_sides_differ(colbert):
    query = colbert.encode_queries(["wireless headphones"])[0]
    document = colbert.encode_documents(["wireless headphones"])[0]
    assert np.abs(query[: len(document)] - document).max() > 1e-3


def test_a_document_gets_the_same_vectors_alone_and_in_a_mixed_batch(colbert):
    _assert_same(colbert.encode_documents(TEXTS), [colbert.encode_documents([t])[0] for t in TEXTS])


def test_a_huge_document_is_truncated_and_counted(colbert_path):
    encoder = ColBERTEncoder(str(colbert_path), device="cpu")
    (doc,) = encoder.encode_documents(["word " * 20_000])
    assert 0 < len(doc) <= 512
    assert encoder.stats.truncated == 1


def test_empty_input_and_bad_texts(colbert):
    assert colbert.encode_documents([]) == []
    with pytest.raises(InvalidTextError, match=r"texts\[1\] is None"):
        colbert.encode_queries(["fine", None])


def test_a_single_vector_model_is_not_a_colbert_model(minilm_path):
    with pytest.raises(ModelLoadError, match="not a ColBERT"):
        ColBERTEncoder(str(minilm_path))


def test_int8_agrees_with_float32(colbert_path):
    fp32 = ColBERTEncoder(str(colbert_path), device="cpu").encode_documents(TEXTS)
    int8 = ColBERTEncoder(str(colbert_path), quantize="int8").encode_documents(TEXTS)
    cosines = np.concatenate([np.sum(a * b, axis=1) for a, b in zip(fp32, int8, strict=True)])
    assert cosines.mean() > 0.99

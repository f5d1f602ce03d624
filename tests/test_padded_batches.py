"""Padded batches are exact: a text's vectors are the same alone or inside any right-padded batch."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.encoders import Side
from lfm_retrieval.encoders.batching import length_sorted_batches
from sample_texts import MIXED

try:
    from sentence_transformers import MultiVectorEncoder
except ImportError:  # sentence-transformers < 6
    MultiVectorEncoder = None
BACKENDS = [
    b for b, ok in (("pylate", importlib.util.find_spec("pylate")), ("sentence-transformers", MultiVectorEncoder)) if ok
]


def _record_batches(encoder) -> list[list[int]]:
    """Wrap ``encoder._encode_batch`` to record each model call's token lengths."""
    calls: list[list[int]] = []
    encode_batch = encoder._encode_batch

    def recording(texts, side):
        calls.append(encoder._token_lengths(texts, side)[0])
        return encode_batch(texts, side)

    encoder._encode_batch = recording
    return calls


def test_the_backbone_zeroes_pads_when_asked(dense_path):
    model = AutoModel.from_pretrained(dense_path).eval()
    texts = [[1, 40, 41, 42, 43], [1, 50, 51], [1, 60, 61, 62, 63, 64, 65, 66]]
    width = max(map(len, texts))
    ids = torch.tensor([t + [0] * (width - len(t)) for t in texts])
    mask = torch.tensor([[1] * len(t) + [0] * (width - len(t)) for t in texts])
    with torch.no_grad():
        alone = [model(input_ids=torch.tensor([t])).last_hidden_state[0] for t in texts]
        model.zero_padding = True
        batched = model(input_ids=ids, attention_mask=mask).last_hidden_state
        model.zero_padding = False
        leaky = model(input_ids=ids, attention_mask=mask).last_hidden_state
    for i, text in enumerate(texts):
        assert (batched[i, : len(text)] - alone[i]).abs().max() < 1e-5
    assert (leaky[0, :5] - alone[0]).abs().max() > 1e-4, "without zeroing the pads leak (as trained)"


def test_pads_never_reach_the_token_wise_layers(dense_path):
    """With ``zero_padding`` a padded batch's Linear layers see its real tokens only (what makes
    padding cheap), the outputs at pads are 0, and autograd runs the same computation."""
    model = AutoModel.from_pretrained(dense_path).eval()
    model.zero_padding = True
    rows: list[int] = []
    for layer in model.layers:
        layer.feed_forward.w1.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[0]))
    ids = torch.tensor([[1, 40, 41, 42, 43, 44], [1, 50, 51, 0, 0, 0]])
    mask = (ids != 0).long()
    with torch.no_grad():
        out = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert rows == [9] * len(model.layers), "6 + 3 real tokens, no pads, in every layer's MLP"
    assert out[1, 3:].abs().max() == 0 and out[1, :3].abs().min() > 0
    with torch.enable_grad():
        trained = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert trained.requires_grad and (trained - out).abs().max() < 1e-6


def test_length_sorted_batches_respect_every_limit():
    lengths = [5, 17, 5, 16, 300, 3, 17, 40, 1]
    assert length_sorted_batches(lengths, 32, 10_000, 0.0) == [[4], [7], [1, 6], [3], [0, 2], [5], [8]]
    for max_padding in (0.1, 0.5, 1.0):
        batches = length_sorted_batches(lengths, 3, 400, max_padding)
        assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
        for batch in batches:
            padded = len(batch) * max(lengths[i] for i in batch)
            assert len(batch) <= 3 and (padded <= 400 or len(batch) == 1)
            assert padded - sum(lengths[i] for i in batch) <= max_padding * padded
    assert length_sorted_batches(lengths, 32, 10_000, 1.0) == [[4, 7, 1, 6, 3, 0, 2, 5, 8]]


@pytest.mark.parametrize("side", ["query", "document"])
def test_dense_padded_batches_equal_each_text_alone(dense_path, side):
    encoder = DenseEncoder(str(dense_path), device="cpu", max_padding=1.0, max_batch_tokens=16384)
    calls = _record_batches(encoder)
    encode = encoder.encode_queries if side == "query" else encoder.encode_documents
    batched = encode(MIXED)
    assert len(calls) == 1 and len(set(calls[0])) > 3, "one padded model call over mixed lengths"
    alone = np.stack([encode([t])[0] for t in MIXED])
    assert np.abs(batched - alone).max() < 1e-5
    # ... and each text alone is what sentence-transformers gives it alone.
    reference = SentenceTransformer(str(dense_path), device="cpu")
    one = reference.encode_query if side == "query" else reference.encode_document
    expected = np.stack([one([t], normalize_embeddings=True)[0] for t in MIXED])
    assert np.abs(batched - expected).max() < 1e-5


@pytest.mark.parametrize("backend", BACKENDS)
def test_colbert_padded_batches_equal_each_text_alone(colbert_path, backend):
    encoder = ColBERTEncoder(str(colbert_path), backend=backend, device="cpu", max_padding=1.0, max_batch_tokens=16384)
    calls = _record_batches(encoder)
    for encode in (encoder.encode_documents, encoder.encode_queries):
        calls.clear()
        batched = encode(MIXED)
        assert len(calls) == 1, "one model call for the whole mixed-length list"
        alone = [encode([t])[0] for t in MIXED]
        for a, b in zip(batched, alone, strict=True):
            assert a.shape == b.shape and np.abs(a - b).max() < 1e-5
    assert len(set(encoder._token_lengths(MIXED, Side.DOCUMENT)[0])) > 3, "the documents had mixed lengths"


def test_colbert_padded_documents_equal_the_reference_alone(colbert_path):
    if not BACKENDS:
        pytest.skip("needs PyLate or sentence-transformers >= 6")
    backend = BACKENDS[0]
    encoder = ColBERTEncoder(str(colbert_path), backend=backend, device="cpu", max_padding=1.0)
    if backend == "pylate":
        from pylate.models import ColBERT

        reference = ColBERT(str(colbert_path), device="cpu")
        query = [np.asarray(reference.encode([t], is_query=True)[0]) for t in MIXED]
        document = [np.asarray(reference.encode([t], is_query=False)[0]) for t in MIXED]
    else:
        reference = MultiVectorEncoder(str(colbert_path), device="cpu")
        query = [np.asarray(reference.encode_query([t], convert_to_numpy=True)[0]) for t in MIXED]
        document = [np.asarray(reference.encode_document([t], convert_to_numpy=True)[0]) for t in MIXED]
    for ours, expected in ((encoder.encode_queries(MIXED), query), (encoder.encode_documents(MIXED), document)):
        for a, b in zip(ours, expected, strict=True):
            assert a.shape == b.shape and np.abs(a - b).max() < 1e-5


def test_real_text_model_pads_inertly(minilm_path):
    encoder = DenseEncoder(str(minilm_path), device="cpu")
    assert encoder.max_padding > 0, "attention-only models mask their pads"
    batched = DenseEncoder(str(minilm_path), device="cpu", max_padding=1.0).encode_documents(MIXED)
    alone = np.stack([encoder.encode_documents([t])[0] for t in MIXED])
    assert np.abs(batched - alone).max() < 1e-5


def test_max_padding_is_checked(dense_path):
    with pytest.raises(ValueError, match="between 0 and 1"):
        DenseEncoder(str(dense_path), device="cpu", max_padding=1.5)
    assert DenseEncoder(str(dense_path), device="cpu", max_padding=0).max_padding == 0


def test_batch_size_defaults_per_device(dense_path):
    from lfm_retrieval.runtimes.loading import BATCH_SIZE, choose_batch_size

    assert DenseEncoder(str(dense_path), device="cpu").batch_size == BATCH_SIZE["cpu"] == 32
    assert DenseEncoder(str(dense_path), device="cpu", batch_size=7).batch_size == 7
    on_an_accelerator = torch.nn.Linear(2, 2, device="meta")  # any device but the CPU: the GPU default
    assert choose_batch_size(on_an_accelerator, None) == BATCH_SIZE["cuda"] == 512
    with pytest.raises(ValueError, match="batch_size"):
        DenseEncoder(str(dense_path), device="cpu", batch_size=0)


def test_max_batch_tokens_defaults_per_device(dense_path):
    from lfm_retrieval.runtimes.loading import BATCH_TOKENS, choose_max_batch_tokens

    assert DenseEncoder(str(dense_path), device="cpu").max_batch_tokens == BATCH_TOKENS["cpu"] == 1024
    assert DenseEncoder(str(dense_path), device="cpu", max_batch_tokens=300).max_batch_tokens == 300
    on_an_accelerator = torch.nn.Linear(2, 2, device="meta")
    assert choose_max_batch_tokens(on_an_accelerator, None) == BATCH_TOKENS["cuda"] == 16384
    with pytest.raises(ValueError, match="max_batch_tokens"):
        DenseEncoder(str(dense_path), device="cpu", max_batch_tokens=0)

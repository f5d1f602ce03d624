"""Reduced-precision queries on CPU: an int8 or bfloat16 copy of the model for the query side only,
kept where it agrees (and, of two that agree, the faster)."""

from __future__ import annotations

import copy
import logging
import pickle
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
import torch

from lfm_retrieval import ColBERTEncoder, DenseEncoder, int8
from lfm_retrieval.int8 import Int8Linear
from lfm_retrieval.runtimes import precision as runtime_precision
from lfm_retrieval.testing import build_minilm_colbert
from sample_texts import TEXTS


def _mean_cosine(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.mean(np.sum(a * b, axis=1)))


def test_queries_int8_documents_float32_on_real_text(minilm_path):
    fp32 = DenseEncoder(str(minilm_path), device="cpu", quantize=None)
    mixed = DenseEncoder(str(minilm_path), quantize="queries")
    assert mixed.query_precision == "int8" and fp32.query_precision == "float32"
    assert not [m for m in mixed.model.modules() if isinstance(m, Int8Linear)], "documents keep float32"
    assert not [m for m in mixed.query_model.modules() if type(m) is torch.nn.Linear], "queries are all int8"
    # documents are the float32 model's vectors exactly; queries agree at cosine >= 0.99, and differ
    assert np.abs(mixed.encode_documents(TEXTS) - fp32.encode_documents(TEXTS)).max() < 1e-6
    queries, reference = mixed.encode_queries(TEXTS), fp32.encode_queries(TEXTS)
    assert _mean_cosine(queries, reference) >= 0.99
    assert np.abs(queries - reference).max() > 1e-6
    assert mixed.query_agreement["int8"] >= 0.99


def test_the_int8_copy_shares_every_tensor_but_the_linear_weights(minilm_path):
    encoder = DenseEncoder(str(minilm_path), quantize="queries")
    original = {p.data_ptr() for p in encoder.model.parameters()}
    copied = [b for m in encoder.query_model.modules() if not isinstance(m, Int8Linear) for b in m.parameters(False)]
    assert copied and all(p.data_ptr() in original for p in copied)
    int8_bytes = sum(m.int8_weight().numel() for m in encoder.query_model.modules() if isinstance(m, Int8Linear))
    assert int8_bytes == runtime_precision.linear_weights(encoder.model)


def test_the_int8_kernels_agree_and_survive_copies():
    """oneDNN's packed int8 matmul (where it is exact here) against ``torch._int_mm``: the same int8
    sums, rescaled in another order (float32 rounding apart); a text's output is the same alone or
    in a batch with either; copies and pickles of a layer with a packed weight compute the same."""
    torch.manual_seed(0)
    linear = torch.nn.Linear(256, 384)
    default, reference = Int8Linear(linear), Int8Linear(linear, onednn=False)
    assert (default.packed is not None) == int8.onednn_int8_is_exact() and reference.packed is None
    assert torch.equal(default.int8_weight(), reference.int8_weight())
    x = torch.randn(3, 9, 256) * torch.logspace(-2, 2, 3)[:, None, None]
    with torch.inference_mode():
        out = default(x)
        assert (out - reference(x)).abs().max() <= 1e-6 * out.abs().max()
        for layer in (default, reference):
            assert torch.equal(layer(x[1:2, :4])[0], layer(x)[1, :4]), "a row's output does not depend on its batch"
        for clone in (copy.deepcopy(default), pickle.loads(pickle.dumps(default))):
            assert torch.equal(clone(x), out)


def test_auto_leaves_small_models_in_float32(minilm_path):
    assert runtime_precision.linear_weights(DenseEncoder(str(minilm_path), quantize=None).model) < 100_000_000
    encoder = DenseEncoder(str(minilm_path))  # quantize="auto" is the default
    assert encoder.query_model is None and encoder.query_precision == "float32"


def cpu_speedups(monkeypatch, **speedups: float) -> None:
    """This CPU's matmul speedups over float32 as given (e.g. int8=4.0: int8 dot-product instructions)."""
    monkeypatch.setattr(runtime_precision, "matmul_speedup", lambda precision: speedups[precision])


@pytest.fixture
def int8_pays(monkeypatch):
    """A CPU with int8 dot-product instructions (int8 matmul 4x float32) and no fast bfloat16."""
    cpu_speedups(monkeypatch, int8=4.0, bfloat16=0.5)


def test_the_matmul_speedups_are_measured():
    for precision in runtime_precision.QUERY_PRECISIONS:
        speedup = runtime_precision.matmul_speedup(precision)
        assert 0.0 < speedup < 100.0 and runtime_precision.matmul_speedup(precision) == speedup, (
            "measured once per process"
        )
    with pytest.raises(ValueError, match="precision must be one of"):
        runtime_precision.matmul_speedup("int4")


def test_auto_makes_large_cpu_models_queries_int8(minilm_path, monkeypatch, int8_pays):
    monkeypatch.setattr(runtime_precision, "QUERY_COPY_MIN_LINEAR_WEIGHTS", 1_000_000)
    encoder = DenseEncoder(str(minilm_path))
    assert encoder.query_precision == "int8" and encoder.query_agreement["int8"] >= 0.99
    assert list(encoder.query_agreement) == ["int8"] and not encoder.query_seconds, "bfloat16 does not pay here"
    # not when the model is asked for in another dtype
    assert DenseEncoder(str(minilm_path), dtype=torch.bfloat16).query_model is None


def test_auto_keeps_float32_queries_where_int8_matmuls_are_slow(minilm_path, monkeypatch, caplog):
    monkeypatch.setattr(runtime_precision, "QUERY_COPY_MIN_LINEAR_WEIGHTS", 1_000_000)
    cpu_speedups(monkeypatch, int8=0.05, bfloat16=0.5)
    assert DenseEncoder(str(minilm_path)).query_model is None
    with caplog.at_level(logging.WARNING, logger="lfm_retrieval"):
        asked = DenseEncoder(str(minilm_path), quantize="queries")
    assert asked.query_precision == "int8", "asked for explicitly: done, with a warning"
    assert any("slower than float32" in r.message and "0.05x" in r.message for r in caplog.records)


def test_auto_keeps_float32_queries_where_int8_does_not_agree(minilm_path, monkeypatch, caplog, int8_pays):
    monkeypatch.setattr(runtime_precision, "QUERY_COPY_MIN_LINEAR_WEIGHTS", 1_000_000)
    monkeypatch.setattr("lfm_retrieval.runtimes.torch_runtime.QUERY_COPY_MIN_AGREEMENT", 1.01)
    encoder = DenseEncoder(str(minilm_path))
    assert encoder.query_model is None and encoder.query_precision == "float32"
    assert 0.99 < encoder.query_agreement["int8"] < 1.01
    with caplog.at_level(logging.WARNING, logger="lfm_retrieval"):
        asked = DenseEncoder(str(minilm_path), quantize="queries")
    assert asked.query_precision == "int8", "asked for explicitly: kept, with a warning"
    assert any("int8 queries agree" in r.message for r in caplog.records)


def test_concurrent_and_batched_queries_equal_one_by_one_on_the_int8_copy(minilm_path):
    """Equal-length batches are bit-exact in int8 too. In a padded batch, attention's float32 sums
    differ from a text's own (1e-7 on an AVX2 CPU, 2e-6 in MiniLM's last hidden state on an AVX-512
    one), which can flip rounded int8 activations: measured cosine to the text alone 0.99994 (AVX2)
    and 0.9983 (AVX-512 VNNI), where int8 alone is at 0.996-0.998 to float32. The bound: coalescing
    moves a query no further than int8 itself moves it from float32."""
    exact = DenseEncoder(str(minilm_path), quantize="queries", max_padding=0)
    alone = np.stack([exact.encode_queries([t])[0] for t in TEXTS])
    assert np.array_equal(exact.encode_queries(TEXTS), alone)
    padded = DenseEncoder(str(minilm_path), quantize="queries")
    assert padded.max_padding > 0
    fp32 = DenseEncoder(str(minilm_path), quantize=None, max_padding=0)
    int8_error = 1 - np.sum(np.stack([fp32.encode_queries([t])[0] for t in TEXTS]) * alone, axis=1).min()
    assert 1 - np.sum(padded.encode_queries(TEXTS) * alone, axis=1).min() <= int8_error


def test_queries_refuse_a_gpu_and_unknown_modes_are_named(minilm_path):
    with pytest.raises(ValueError, match="quantize='queries' runs on the CPU"):
        DenseEncoder(str(minilm_path), device="cuda", quantize="queries")
    with pytest.raises(ValueError, match="quantize must be None, 'int8', 'queries' or 'auto', not 'int4'"):
        DenseEncoder(str(minilm_path), quantize="int4")


def test_colbert_queries_int8_documents_float32(minilm_path, tmp_path):
    path = str(build_minilm_colbert(tmp_path / "minilm-colbert", minilm_path))
    fp32 = ColBERTEncoder(path, device="cpu", quantize=None)
    mixed = ColBERTEncoder(path, quantize="queries")
    for a, b in zip(mixed.encode_documents(TEXTS), fp32.encode_documents(TEXTS), strict=True):
        assert np.abs(a - b).max() < 1e-6
    queries, reference = mixed.encode_queries(TEXTS), fp32.encode_queries(TEXTS)
    assert _mean_cosine(np.concatenate(queries), np.concatenate(reference)) >= 0.99
    assert mixed.query_agreement["int8"] >= 0.99


@pytest.fixture
def bfloat16_pays(monkeypatch):
    """A CPU with AMX: bfloat16 matmul 3x float32, int8 without dot-product instructions."""
    monkeypatch.setattr(runtime_precision, "QUERY_COPY_MIN_LINEAR_WEIGHTS", 1_000_000)
    cpu_speedups(monkeypatch, int8=0.05, bfloat16=3.0)


def test_auto_gives_queries_a_bfloat16_copy_where_bfloat16_pays(minilm_path, bfloat16_pays):
    fp32 = DenseEncoder(str(minilm_path), device="cpu", quantize=None)
    encoder = DenseEncoder(str(minilm_path))
    assert encoder.query_precision == "bfloat16" and list(encoder.query_agreement) == ["bfloat16"]
    assert encoder.query_agreement["bfloat16"] >= 0.999
    assert {p.dtype for p in encoder.query_model.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in encoder.model.parameters()} == {torch.float32}, "documents keep float32"
    assert np.abs(encoder.encode_documents(TEXTS) - fp32.encode_documents(TEXTS)).max() < 1e-6
    queries, reference = encoder.encode_queries(TEXTS), fp32.encode_queries(TEXTS)
    assert queries.dtype == np.float32 and _mean_cosine(queries, reference) >= 0.999
    assert np.abs(queries - reference).max() > 1e-6, "the queries did run in bfloat16"
    assert np.abs(np.linalg.norm(queries, axis=1) - 1).max() < 1e-6, "unit vectors, normalised in float32"


def test_auto_keeps_the_faster_copy_when_both_agree(minilm_path, monkeypatch):
    monkeypatch.setattr(runtime_precision, "QUERY_COPY_MIN_LINEAR_WEIGHTS", 1_000_000)
    cpu_speedups(monkeypatch, int8=4.0, bfloat16=3.0)
    encoder = DenseEncoder(str(minilm_path))
    assert set(encoder.query_agreement) == set(encoder.query_seconds) == {"int8", "bfloat16"}
    assert min(encoder.query_agreement.values()) >= 0.99
    assert encoder.query_precision == min(encoder.query_seconds, key=encoder.query_seconds.get)
    assert all(0 < seconds < 5 for seconds in encoder.query_seconds.values())


def test_fastest_alternates_and_keeps_the_shortest():
    calls: list[str] = []

    def sleeper(key: str, seconds: float):
        return lambda: (calls.append(key), time.sleep(seconds))

    chosen, best = runtime_precision.fastest(
        {"slow": sleeper("slow", 0.03), "quick": sleeper("quick", 0.003)}, rounds=2
    )
    assert chosen == "quick" and best["quick"] < 0.02 <= best["slow"]
    assert calls == ["slow", "quick"] * 3, "one warm-up each, then the rounds alternate"


def test_concurrent_and_batched_queries_on_the_bfloat16_copy(minilm_path, bfloat16_pays):
    """As for int8: coalescing moves a query no further than bfloat16 itself moves it from float32."""
    encoder = DenseEncoder(str(minilm_path))
    assert encoder.query_precision == "bfloat16" and encoder.max_padding > 0
    alone = np.stack([encoder.encode_queries([t])[0] for t in TEXTS])
    fp32 = DenseEncoder(str(minilm_path), quantize=None, max_padding=0)
    bf16_error = 1 - np.sum(np.stack([fp32.encode_queries([t])[0] for t in TEXTS]) * alone, axis=1).min()
    with ThreadPoolExecutor(8) as pool:
        coalesced = np.stack([v[0] for v in pool.map(lambda t: encoder.encode_queries([t]), TEXTS)])
    assert 1 - np.sum(encoder.encode_queries(TEXTS) * alone, axis=1).min() <= bf16_error
    assert 1 - np.sum(coalesced * alone, axis=1).min() <= bf16_error


def test_colbert_queries_bfloat16_documents_float32(minilm_path, tmp_path, bfloat16_pays):
    path = str(build_minilm_colbert(tmp_path / "minilm-colbert", minilm_path))
    fp32 = ColBERTEncoder(path, device="cpu", quantize=None)
    mixed = ColBERTEncoder(path)
    assert mixed.query_precision == "bfloat16"
    for a, b in zip(mixed.encode_documents(TEXTS), fp32.encode_documents(TEXTS), strict=True):
        assert np.abs(a - b).max() < 1e-6
    queries, reference = mixed.encode_queries(TEXTS), fp32.encode_queries(TEXTS)
    assert all(q.dtype == np.float32 and q.shape == r.shape for q, r in zip(queries, reference, strict=True))
    for vectors in (reference, queries):
        norms = np.linalg.norm(np.concatenate(vectors), axis=1)
        assert np.abs(norms - 1).max() < 1e-5, "unit token vectors in float32 and in bfloat16"
    assert _mean_cosine(np.concatenate(queries), np.concatenate(reference)) >= 0.999

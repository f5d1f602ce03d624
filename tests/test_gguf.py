"""The llama.cpp (GGUF) runtime against the torch runtime, on the tiny checkpoints converted with
llama.cpp's own converter: same tokens, same vectors per side, ColBERT rules applied as PyLate does."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="the gguf runtime needs lfm-retrieval[gguf] (llama-cpp-python)")

from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder, Side
from lfm_retrieval.errors import ModelLoadError
from lfm_retrieval.runtimes.gguf import GGUFColBERTRuntime, GGUFDenseRuntime
from lfm_retrieval.runtimes.gguf_convert import TOKENIZER_CHECK_TEXTS, convert, equivalent_pre_tokenizer
from lfm_retrieval.runtimes.gguf_model import load_vocab, tokenize
from lfm_retrieval.testing.gguf import build_gguf_checkpoints
from sample_texts import MIXED

# minimum per-text (dense) / per-token (ColBERT) cosine to the torch runtime's float32 vectors
AGREEMENT = {"f32": 0.9999, "f16": 0.999, "q8_0": 0.99}
TEXTS = [*MIXED, "Zapatillas de trail, talla 42 — ¿impermeables? ¡Sí!", "30 heures d'autonomie... (noir) [promo]"]


@pytest.fixture(scope="module")
def dense_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    return build_gguf_checkpoints("dense", tmp_path_factory.mktemp("gguf-dense"), AGREEMENT)


@pytest.fixture(scope="module")
def colbert_gguf(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Path]]:
    return build_gguf_checkpoints("colbert", tmp_path_factory.mktemp("gguf-colbert"), ("f32", "q8_0"))


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_gguf_tokenises_as_the_checkpoint(dense_gguf) -> None:
    from tokenizers import Tokenizer

    checkpoint, files = dense_gguf
    reference = Tokenizer.from_file(str(checkpoint / "tokenizer.json"))
    vocab = load_vocab(files["f32"])
    for text in [*TEXTS, *TOKENIZER_CHECK_TEXTS]:
        assert tokenize(vocab, text) == reference.encode(text).ids, text


@pytest.mark.parametrize("outtype", list(AGREEMENT))
def test_dense_vectors_equal_torch_per_side(dense_gguf, outtype: str) -> None:
    checkpoint, files = dense_gguf
    torch_encoder = DenseEncoder(str(checkpoint), quantize=None)
    gguf = GGUFDenseRuntime(files[outtype], n_threads=1)
    assert gguf.dimension == torch_encoder.dimension and gguf.precision == outtype
    for side, encode in ((Side.QUERY, torch_encoder.encode_queries), (Side.DOCUMENT, torch_encoder.encode_documents)):
        ours = np.stack(gguf.encode_batch(TEXTS, side))
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        agreement = cosines(ours, encode(TEXTS))
        assert agreement.min() >= AGREEMENT[outtype], (side, agreement)
        assert gguf.token_lengths(TEXTS, side) == torch_encoder.runtime.token_lengths(TEXTS, side)
    # the prompt is applied once, by the runtime: the sides differ, and an empty prompt is the raw text
    query, document = gguf.encode_batch(TEXTS[:1], Side.QUERY)[0], gguf.encode_batch(TEXTS[:1], Side.DOCUMENT)[0]
    assert cosines(query, document) < 0.999
    raw = GGUFDenseRuntime(files[outtype], prompts={"query": "", "document": ""}, n_threads=1)
    assert np.allclose(raw.encode_batch(["query: " + TEXTS[0]], Side.DOCUMENT)[0], query, atol=1e-6)


def test_dense_encoder_picks_the_gguf_runtime(dense_gguf) -> None:
    checkpoint, files = dense_gguf
    encoder = DenseEncoder(str(files["f32"]))
    assert type(encoder.runtime).__name__ == "GGUFDenseRuntime"
    reference = DenseEncoder(str(checkpoint), quantize=None)
    texts = [*TEXTS, "A long description. " * 60]  # past 512 tokens: cut alike, and counted
    assert cosines(encoder.encode_queries(texts), reference.encode_queries(texts)).min() >= 0.9999
    assert cosines(encoder.encode_documents(texts), reference.encode_documents(texts)).min() >= 0.9999
    assert encoder.stats.truncated == reference.stats.truncated == 2


def test_colbert_documents_equal_torch(colbert_gguf) -> None:
    checkpoint, files = colbert_gguf
    reference = ColBERTEncoder(str(checkpoint), quantize=None).encode_documents(TEXTS)
    for outtype in files:
        gguf = GGUFColBERTRuntime(files[outtype], n_threads=1)
        ours = gguf.encode_batch(TEXTS, Side.DOCUMENT)
        for text, mine, theirs in zip(TEXTS, ours, reference, strict=True):
            assert mine.shape == theirs.shape, text  # prefix inserted, skiplist tokens dropped alike
            assert cosines(mine, theirs).min() >= AGREEMENT[outtype], (outtype, text)
        assert gguf.token_lengths(TEXTS, Side.DOCUMENT)[0] == [len(ids) for ids in _model_ids(gguf, Side.DOCUMENT)]


def _model_ids(gguf: GGUFColBERTRuntime, side: Side) -> list[list[int]]:
    return [gguf.rules.model_ids(tokenize(gguf.model.llm, text), side) for text in TEXTS]


def test_colbert_document_skiplist_and_prefix(colbert_gguf) -> None:
    _, files = colbert_gguf
    gguf = GGUFColBERTRuntime(files["f32"], n_threads=1)
    comma = tokenize(gguf.model.llm, ",")[-1]
    assert comma in gguf.rules.skiplist_ids
    ids = gguf.rules.model_ids(tokenize(gguf.model.llm, "a, b"), Side.DOCUMENT)
    assert ids[1] == gguf.rules.document_prefix_id and comma in ids
    kept = gguf.rules.kept_rows(ids, Side.DOCUMENT)
    assert kept.sum() == len(ids) - 1 and gguf.encode_batch(["a, b"], Side.DOCUMENT)[0].shape[0] == len(ids) - 1


def test_colbert_queries_expand_and_match_torch_attending_to_expansion(colbert_gguf, tmp_path: Path) -> None:
    """llama.cpp has no key mask inside a sequence, so its queries are PyLate's with
    ``attend_to_expansion_tokens=True``: equal to the torch runtime on such a config."""
    checkpoint, files = colbert_gguf
    attending = tmp_path / "attending"
    shutil.copytree(checkpoint, attending)
    config_file = attending / "config_sentence_transformers.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "attend_to_expansion_tokens": True}))
    reference = ColBERTEncoder(str(attending), quantize=None).encode_queries(TEXTS)
    gguf = GGUFColBERTRuntime(files["f32"], n_threads=1)
    ours = gguf.encode_batch(TEXTS, Side.QUERY)
    for text, mine, theirs in zip(TEXTS, ours, reference, strict=True):
        assert mine.shape == theirs.shape == (32, gguf.dimension), text
        assert cosines(mine, theirs).min() >= 0.9999, text
    ids = _model_ids(gguf, Side.QUERY)
    assert all(len(row) == 32 and row[1] == gguf.rules.query_prefix_id for row in ids)
    assert ids[0][-1] == gguf.rules.expansion_id == 7  # LFM2's <|im_end|>, as PyLate pads an LLM tokenizer
    assert gguf.token_lengths(TEXTS, Side.QUERY)[0] == [32] * len(TEXTS)


def test_conversion_refuses_a_tokenizer_without_equivalent(dense_gguf, tmp_path: Path) -> None:
    checkpoint, _ = dense_gguf
    odd = tmp_path / "odd"
    shutil.copytree(checkpoint, odd)
    spec = json.loads((odd / "tokenizer.json").read_text())
    spec["pre_tokenizer"] = {"type": "Sequence", "pretokenizers": [{"type": "Digits", "individual_digits": True},
                                                                    spec["pre_tokenizer"]]}  # fmt: skip
    (odd / "tokenizer.json").write_text(json.dumps(spec))
    assert equivalent_pre_tokenizer(odd) is None
    with pytest.raises(ModelLoadError, match=r"no exact llama\.cpp equivalent"):
        convert(odd, tmp_path / "odd.gguf", "f32")
    assert not (tmp_path / "odd.gguf").exists()


def test_bad_files_are_refused_before_loading(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no GGUF file"):
        GGUFDenseRuntime(tmp_path / "missing.gguf")
    not_gguf = tmp_path / "model.gguf"
    not_gguf.write_bytes(b"PK\x03\x04 not a gguf")
    with pytest.raises(ModelLoadError, match="not a GGUF file"):
        GGUFDenseRuntime(not_gguf)


def test_a_crash_in_the_probe_raises_instead_of_killing_the_process(dense_gguf, monkeypatch) -> None:
    """A llama.cpp build with an instruction this CPU lacks dies with SIGILL: in the child, not here."""
    import subprocess

    from lfm_retrieval.runtimes import gguf_model

    def dies_with_sigill(args, **kwargs):
        return subprocess.CompletedProcess(args, -4, "", "")

    monkeypatch.setattr(gguf_model, "_PROBED", set())
    monkeypatch.setattr(gguf_model.subprocess, "run", dies_with_sigill)
    with pytest.raises(ModelLoadError, match=r"SIGILL.*CMAKE_ARGS"):
        GGUFDenseRuntime(dense_gguf[1]["f32"])


def test_conversion_check_refuses_vectors_that_disagree(dense_gguf, tmp_path: Path) -> None:
    """The vector check compares with the checkpoint's own torch vectors: another checkpoint's file fails it."""
    from lfm_retrieval.runtimes.gguf_convert import check_vectors
    from lfm_retrieval.testing import build_dense_checkpoint

    checkpoint, files = dense_gguf
    assert check_vectors(checkpoint, files["f32"], "f32") >= 0.9999
    other = build_dense_checkpoint(tmp_path / "other", seed=1)
    with pytest.raises(ModelLoadError, match=r"agrees with the checkpoint at cosine .* only"):
        check_vectors(other, files["f32"], "f32")

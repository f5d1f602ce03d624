"""Checkpoints under transformers' newer model type load; broken checkpoints get an error naming the cause."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from transformers import AutoConfig, AutoModel

from lfm_retrieval import ColBERTEncoder, DenseEncoder, ModelLoadError
from lfm_retrieval.models import MODEL_TYPE, is_bidirectional_backbone
from lfm_retrieval.testing import build_colbert_checkpoint, build_dense_checkpoint
from sample_texts import TEXTS


@pytest.fixture(scope="module")
def typed_dense(tmp_path_factory):
    """The dense fixture's checkpoint (same seed, same weights) saying model_type lfm2_bidirectional."""
    return build_dense_checkpoint(tmp_path_factory.mktemp("typed-dense"), model_type=MODEL_TYPE)


def test_the_checkpoint_says_the_new_model_type_without_remote_code(typed_dense):
    config = json.loads((typed_dense / "config.json").read_text())
    assert config["model_type"] == MODEL_TYPE and "auto_map" not in config
    assert AutoConfig.from_pretrained(typed_dense).model_type == MODEL_TYPE
    assert is_bidirectional_backbone(AutoModel.from_pretrained(typed_dense))


def test_a_lfm2_bidirectional_checkpoint_gives_the_lfm2_typed_vectors(typed_dense, dense_path):
    typed = DenseEncoder(str(typed_dense), device="cpu")
    plain = DenseEncoder(str(dense_path), device="cpu")
    assert is_bidirectional_backbone(typed.model[0].auto_model)
    for side in ("encode_queries", "encode_documents"):
        assert np.abs(getattr(typed, side)(TEXTS) - getattr(plain, side)(TEXTS)).max() < 1e-6


def test_a_lfm2_bidirectional_colbert_checkpoint_gives_the_lfm2_typed_vectors(tmp_path, colbert_path):
    typed = ColBERTEncoder(str(build_colbert_checkpoint(tmp_path / "typed", model_type=MODEL_TYPE)), device="cpu")
    plain = ColBERTEncoder(str(colbert_path), device="cpu")
    for a, b in zip(
        typed.encode_queries(TEXTS) + typed.encode_documents(TEXTS),
        plain.encode_queries(TEXTS) + plain.encode_documents(TEXTS),
        strict=True,
    ):
        assert a.shape == b.shape and np.abs(a - b).max() < 1e-6


def _copy(dense_path, tmp_path):
    return shutil.copytree(dense_path, tmp_path / "model")


def test_a_corrupt_weights_file_is_named(dense_path, tmp_path):
    folder = _copy(dense_path, tmp_path)
    (folder / "model.safetensors").write_bytes(b"this is not a safetensors file" * 10)
    with pytest.raises(ModelLoadError, match=r"corrupt weights file .*model\.safetensors") as info:
        DenseEncoder(str(folder), device="cpu")
    assert "no weights" not in str(info.value)


def test_an_unknown_model_type_is_named(dense_path, tmp_path):
    folder = _copy(dense_path, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, "model_type": "lfm9_unheard_of"}))
    with pytest.raises(ModelLoadError, match=r"unknown model type 'lfm9_unheard_of'") as info:
        DenseEncoder(str(folder), device="cpu")
    assert "no weights" not in str(info.value)


def test_a_missing_weights_file_is_named(dense_path, tmp_path):
    folder = _copy(dense_path, tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError, match=r"missing its weights file"):
        DenseEncoder(str(folder), device="cpu")


def test_a_missing_or_corrupt_config_is_named(dense_path, tmp_path):
    folder = _copy(dense_path, tmp_path)
    (folder / "config.json").write_text("{ not json")
    with pytest.raises(ModelLoadError, match=r"corrupt config\.json"):
        DenseEncoder(str(folder), device="cpu")
    (folder / "config.json").unlink()
    with pytest.raises(ModelLoadError, match=r"missing a file: .*config\.json"):
        DenseEncoder(str(folder), device="cpu")


def test_a_corrupt_colbert_projection_is_named(colbert_path, tmp_path):
    folder = shutil.copytree(colbert_path, tmp_path / "colbert")
    (folder / "1_Dense" / "model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(ModelLoadError, match=r"corrupt weights file .*1_Dense"):
        ColBERTEncoder(str(folder), device="cpu")

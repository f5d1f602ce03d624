"""A real OpenAI-compatible server, llama-cpp-python's own (``python -m llama_cpp.server``), serving the
tiny dense checkpoint as f32 GGUF: ``DenseEncoder(folder, base_url=...)`` equals the torch runtime."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp.server.app", reason="needs llama-cpp-python[server]")

from lfm_retrieval.encoders import DenseEncoder
from lfm_retrieval.testing.gguf import build_gguf_checkpoints
from lfm_retrieval.testing.servers import free_port, running_process
from sample_texts import MIXED


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """The checkpoint folder and the base URL of llama.cpp's server on its f32 GGUF; stopped afterwards."""
    checkpoint, files = build_gguf_checkpoints("dense", tmp_path_factory.mktemp("gguf-server"), ("f32",))
    port = free_port()
    command = [sys.executable, "-m", "llama_cpp.server", "--model", str(files["f32"]), "--embedding", "true"]
    command += ["--host", "127.0.0.1", "--port", str(port), "--n_threads", "1", "--verbose", "false"]
    url = f"http://127.0.0.1:{port}"
    with running_process(command, f"{url}/v1/models", name="llama_cpp.server"):
        yield checkpoint, url


def test_dense_encoder_on_llama_cpp_server_equals_torch_per_side(served) -> None:
    checkpoint, url = served
    remote = DenseEncoder(str(checkpoint), base_url=url)
    reference = DenseEncoder(str(checkpoint), quantize=None)
    for encode, expected in (
        (remote.encode_queries, reference.encode_queries),
        (remote.encode_documents, reference.encode_documents),
    ):
        ours, theirs = encode(MIXED), expected(MIXED)
        assert ours.shape == theirs.shape
        assert np.allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert np.sum(ours * theirs, axis=1).min() >= 0.9999
    # the client adds each prompt once: with no prompt the vectors are the raw text's, not the query's
    raw = DenseEncoder(str(checkpoint), base_url=url, prompts={"query": "", "document": ""})
    assert np.sum(raw.encode_queries(MIXED) * reference.encode_queries(MIXED), axis=1).min() < 0.999

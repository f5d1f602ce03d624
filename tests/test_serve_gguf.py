"""``lfm-retrieval serve --model x.gguf --colbert y.gguf``: one real server process on the session's f32
GGUF files; its routes give what the same files give in this process, each side's prompt applied once."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("llama_cpp", reason="GGUF files need lfm-retrieval[gguf] (llama-cpp-python)")

pytest.importorskip("fastapi", reason="serve needs lfm-retrieval[serve]")

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.runtimes.gguf import LFM25_PROMPTS
from lfm_retrieval.serve.app import POOLING_NEEDS_TORCH
from test_serve import TEXTS, httpx, serve_command


@pytest.fixture(scope="module")
def client(gguf_files: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    """A client of the module's one ``serve`` process (the dense and the ColBERT GGUF)."""
    log = tmp_path_factory.mktemp("serve-gguf") / "server.log"
    args = ["--model", str(gguf_files["dense"]), "--colbert", str(gguf_files["colbert"])]
    with serve_command(args, log) as (_, url), httpx.Client(base_url=url, timeout=60) as http:
        yield http


@pytest.fixture(scope="module")
def in_process(gguf_files: dict[str, Path]) -> tuple[DenseEncoder, ColBERTEncoder]:
    return DenseEncoder(str(gguf_files["dense"])), ColBERTEncoder(str(gguf_files["colbert"]))


def encode(encoder: DenseEncoder | ColBERTEncoder, side: str, texts: list[str]) -> object:
    return encoder.encode_queries(texts) if side == "query" else encoder.encode_documents(texts)


@pytest.mark.parametrize("side", ["query", "document"])
def test_dense_routes_equal_the_gguf_in_process_with_the_prompt_once(client, in_process, gguf_files, side) -> None:
    expected = encode(in_process[0], side, TEXTS)
    embed = client.post("/embed", json={"inputs": TEXTS, "prompt_name": side})
    assert embed.status_code == 200, embed.text
    body = {"input": TEXTS, "model": "any", "input_type": side, "encoding_format": "base64"}
    openai = client.post("/v1/embeddings", json=body)
    assert openai.status_code == 200, openai.text
    rows = [np.frombuffer(base64.b64decode(row["embedding"]), "<f4") for row in openai.json()["data"]]
    for got in (np.asarray(embed.json(), np.float32), np.stack(rows)):
        assert got.shape == expected.shape and np.abs(got - expected).max() <= 1e-5
    # once: the raw text with the side's prompt written in, through no prompt, is the same vector
    raw = DenseEncoder(str(gguf_files["dense"]), prompts={"query": "", "document": ""})
    prompt = LFM25_PROMPTS[side]
    assert np.abs(raw.encode_queries([prompt + text for text in TEXTS]) - expected).max() <= 1e-5
    twice = raw.encode_queries([prompt + prompt + text for text in TEXTS])
    assert np.sum(twice * expected, axis=1).min() < 0.999


@pytest.mark.parametrize("side", ["query", "document"])
def test_embed_multivector_equals_the_gguf_in_process(client, in_process, side) -> None:
    expected = encode(in_process[1], side, TEXTS)
    got = client.post("/embed_multivector", json={"inputs": TEXTS, "prompt_name": side})
    assert got.status_code == 200, got.text
    for tokens, want in zip(got.json(), expected, strict=True):
        assert np.asarray(tokens).shape == want.shape
        assert np.abs(np.asarray(tokens, np.float32) - want).max() <= 1e-5


def test_pooling_answers_501_saying_why_and_where_the_vectors_are(client) -> None:
    got = client.post("/pooling", json={"input": TEXTS[:1], "task": "token_embed"})
    assert got.status_code == 501, got.text
    message = got.json()["error"]
    assert message == POOLING_NEEDS_TORCH
    assert all(part in message for part in ("torch runtime", "GGUF", "/embed_multivector"))
    assert client.post("/embed_multivector", json={"inputs": TEXTS[:1], "prompt_name": "query"}).status_code == 200

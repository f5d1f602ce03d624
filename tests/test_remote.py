"""The remote runtime against real HTTP servers on 127.0.0.1: ``lfm-retrieval serve`` (detected, the
server applies the sides) and an OpenAI-compatible ``/v1/embeddings`` that applies NO prompt, so the
vectors equal the in-process encoder's only if the client added each side's prompt exactly once."""

from __future__ import annotations

import json
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")
fastapi = pytest.importorskip("fastapi")

from lfm_retrieval import ColBERTEncoder, DenseEncoder, ModelLoadError, Side  # noqa: E402
from lfm_retrieval.runtimes import runtime_kind  # noqa: E402
from lfm_retrieval.runtimes.model_thread import run_on_model_thread  # noqa: E402
from lfm_retrieval.runtimes.remote import RemoteError, RemoteUnavailableError  # noqa: E402
from lfm_retrieval.serve import create_app  # noqa: E402
from lfm_retrieval.testing.servers import free_port  # noqa: E402

QUERIES = ["waterproof trail shoes", "Kopfhörer mit Geräuschunterdrückung", "gourde inox 750 ml"]
DOCUMENTS = [
    "Trail running shoes with a waterproof membrane and a grippy outsole.",
    "Over-ear headphones, active noise cancelling, 30 hours of battery.",
    "Une gourde en acier inoxydable de 750 ml, double paroi.",
    "Short.",
]
API_KEY = "test-key"


class Server:
    """uvicorn in a thread on a socket bound to 127.0.0.1:0; stopped by :meth:`stop`."""

    def __init__(self, app: object) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(60)
        self.socket.close()


def openai_app(reference: DenseEncoder, dimension: int | None = None) -> object:
    """An OpenAI-compatible embeddings server over the torch model, with no prompt of its own
    (plain ``SentenceTransformer.encode``), that wants ``Authorization: Bearer API_KEY``."""
    app = fastapi.FastAPI()
    model = reference.model

    @app.post("/v1/embeddings")
    def embeddings(body: dict, authorization: str | None = fastapi.Header(default=None)) -> object:
        if authorization != f"Bearer {API_KEY}":
            return fastapi.responses.JSONResponse({"error": {"message": "invalid api key"}}, status_code=401)
        texts = body["input"]
        assert "input_type" not in body and "prompt_name" not in body, "OpenAI's API has no side"
        vectors = run_on_model_thread(model.encode, texts, batch_size=1, normalize_embeddings=True)
        vectors = np.asarray(vectors, np.float32)[:, :dimension] if dimension else vectors
        data = [{"object": "embedding", "index": i, "embedding": v.tolist()} for i, v in enumerate(vectors)]
        return {"object": "list", "data": data, "model": body["model"]}

    return app


@pytest.fixture(scope="module")
def reference(dense_path: Path, colbert_path: Path) -> tuple[DenseEncoder, ColBERTEncoder]:
    return DenseEncoder(str(dense_path), device="cpu"), ColBERTEncoder(str(colbert_path), device="cpu")


@pytest.fixture(scope="module")
def serve_url(reference: tuple[DenseEncoder, ColBERTEncoder]) -> Iterator[str]:
    server = Server(create_app(*reference))
    yield server.url
    server.stop()


@pytest.fixture(scope="module")
def openai_url(reference: tuple[DenseEncoder, ColBERTEncoder]) -> Iterator[str]:
    server = Server(openai_app(reference[0]))
    yield server.url
    server.stop()


def test_dense_over_lfm_retrieval_serve_equals_the_torch_runtime(reference, serve_url, dense_path) -> None:
    dense = reference[0]
    for model in (None, str(dense_path)):
        remote = DenseEncoder(model, base_url=serve_url)
        assert remote.runtime.server == "lfm-retrieval serve"
        assert remote.model_id == dense.model_id and remote.dimension == dense.dimension
        assert remote.prompts == dense.prompts, "the server's prompts, for fingerprints (applied by the server)"
        np.testing.assert_allclose(remote.encode_queries(QUERIES), dense.encode_queries(QUERIES), atol=1e-6)
        np.testing.assert_allclose(remote.encode_documents(DOCUMENTS), dense.encode_documents(DOCUMENTS), atol=1e-6)


def test_colbert_over_lfm_retrieval_serve_equals_the_torch_runtime(reference, serve_url) -> None:
    colbert = reference[1]
    remote = ColBERTEncoder(base_url=serve_url)
    assert (remote.query_length, remote.document_prefix) == (colbert.query_length, colbert.document_prefix)
    for got, expected in zip(remote.encode_queries(QUERIES), colbert.encode_queries(QUERIES), strict=True):
        assert got.shape == expected.shape == (colbert.query_length, colbert.dimension)
        np.testing.assert_allclose(got, expected, atol=1e-6)
    for got, expected in zip(remote.encode_documents(DOCUMENTS), colbert.encode_documents(DOCUMENTS), strict=True):
        assert got.shape == expected.shape
        np.testing.assert_allclose(got, expected, atol=1e-6)


def test_openai_compatible_server_gets_each_prompt_once_from_the_client(reference, openai_url, dense_path) -> None:
    dense = reference[0]
    remote = DenseEncoder(str(dense_path), base_url=openai_url, api_key=API_KEY)
    assert remote.runtime.server == "openai" and remote.dimension == dense.dimension
    queries, documents = remote.encode_queries(QUERIES), remote.encode_documents(DOCUMENTS)
    np.testing.assert_allclose(queries, dense.encode_queries(QUERIES), atol=1e-5)
    np.testing.assert_allclose(documents, dense.encode_documents(DOCUMENTS), atol=1e-5)
    same_text = remote.encode_documents(QUERIES)
    assert np.max(np.abs(same_text - queries)) > 1e-3, "the two sides differ: a prompt was applied"
    # prompts="server": the client sends raw text (for a server that adds the prompt itself); this
    # server adds none, so the vectors are the prompt-less ones, and no longer the query side's
    raw = DenseEncoder(str(dense_path), base_url=openai_url, api_key=API_KEY, prompts="server")
    plain = run_on_model_thread(dense.model.encode, QUERIES, batch_size=1, normalize_embeddings=True)
    np.testing.assert_allclose(raw.encode_queries(QUERIES), plain, atol=1e-5)
    # prompts given explicitly override the model's
    swapped = {"query": dense.prompts["document"], "document": dense.prompts["query"]}
    crossed = DenseEncoder(str(dense_path), base_url=openai_url, api_key=API_KEY, prompts=swapped)
    np.testing.assert_allclose(crossed.encode_queries(QUERIES), same_text, atol=1e-5)


def test_a_server_of_another_width_is_refused_in_one_line(reference, openai_url) -> None:
    # LFM2.5-Embedding-350M's vectors are 1024-d; the test model behind this server is narrower
    with pytest.raises(RemoteError, match=r"gives \d+-d vectors, but LFM2.5-Embedding-350M has 1024") as caught:
        DenseEncoder("LiquidAI/LFM2.5-Embedding-350M", base_url=openai_url, api_key=API_KEY)
    assert "\n" not in str(caught.value)


def test_a_server_that_changes_width_mid_run_is_refused(reference, dense_path) -> None:
    server = Server(openai_app(reference[0]))
    try:
        remote = DenseEncoder(str(dense_path), base_url=server.url, api_key=API_KEY)
    finally:
        server.stop()
    narrower = Server(openai_app(reference[0], dimension=8))
    try:
        remote.runtime.endpoint._client.base_url = narrower.url  # the same client, now another model behind it
        with pytest.raises(RemoteError, match=f"answered 8-d vectors; this model's have {remote.dimension}"):
            remote.encode_documents(DOCUMENTS)
    finally:
        narrower.stop()


def test_http_errors_and_unreachable_servers_are_one_clear_line(reference, openai_url, serve_url, dense_path) -> None:
    with pytest.raises(RemoteError, match="answered 401: invalid api key") as caught:
        DenseEncoder(str(dense_path), base_url=openai_url)  # no api_key
    assert caught.value.status == 401 and "\n" not in str(caught.value)
    port = free_port()
    with pytest.raises(RemoteUnavailableError, match=f"cannot reach the server at http://127.0.0.1:{port}") as down:
        DenseEncoder(str(dense_path), base_url=f"http://127.0.0.1:{port}")
    assert "\n" not in str(down.value)
    with pytest.raises(RemoteError, match="is not an lfm-retrieval server"):
        ColBERTEncoder(base_url=openai_url, api_key=API_KEY)
    with pytest.raises(ModelLoadError, match=r"serves 'lfm25-embedding\d*', not 'other-model'"):
        DenseEncoder("org/other-model", base_url=serve_url)
    with pytest.raises(ValueError, match="base_url must start with http"):
        DenseEncoder(str(dense_path), base_url="127.0.0.1:8000")
    remote = DenseEncoder(base_url=serve_url)
    with pytest.raises(RemoteError, match="answered 422: inputs\\[0\\] is empty"):
        remote.runtime.encode_batch([" "], Side.QUERY)  # past the encoder's own check


def test_the_runtime_follows_the_arguments() -> None:
    assert runtime_kind("org/model", "auto", None) == "torch"
    assert runtime_kind("./m.Q8_0.gguf", "auto", None) == "gguf"
    assert runtime_kind("org/model", "auto", "http://127.0.0.1:1") == "remote"
    with pytest.raises(ValueError, match="contradicts it"):
        runtime_kind("org/model", "torch", "http://127.0.0.1:1")
    with pytest.raises(ValueError, match="needs base_url"):
        runtime_kind("org/model", "remote", None)
    with pytest.raises(ValueError, match="is a GGUF file"):
        runtime_kind("m.gguf", "torch", None)
    with pytest.raises(ValueError, match="runtime must be one of"):
        runtime_kind("org/model", "onnx", None)


def test_cli_index_and_search_over_a_server_give_the_torch_runtimes_top_10(serve_url, dense_path, tmp_path) -> None:
    from typer.testing import CliRunner

    from lfm_retrieval.cli import app
    from lfm_retrieval.data import SAMPLE_CATALOG

    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines(True)[:60]), "utf-8")
    runner, results = CliRunner(), {}
    for name, where in (("remote", ["--base-url", serve_url]), ("torch", ["--model", str(dense_path)])):
        store = f"qdrant+local://{tmp_path}/{name}/products"
        indexed = runner.invoke(app, ["index", str(catalog), "--store", store, *where])
        assert indexed.exit_code == 0, indexed.output
        found = runner.invoke(app, ["search", "waterproof shoes", "--store", store, "--json", *where])
        assert found.exit_code == 0, found.output
        results[name] = json.loads(found.stdout)
    assert [hit["key"] for hit in results["remote"]] == [hit["key"] for hit in results["torch"]]
    assert len(results["torch"]) == 10
    np.testing.assert_allclose(
        [hit["score"] for hit in results["remote"]], [hit["score"] for hit in results["torch"]], atol=1e-5
    )


def test_cli_demo_over_a_server_equals_the_torch_runtime(reference, serve_url, dense_path) -> None:
    """``demo --base-url``: the sample catalog indexed, searched and scored through ``lfm-retrieval serve``
    holds and prints what the in-process encoder gives (documents sampled: the demo's 319 run once)."""
    from typer.testing import CliRunner

    from lfm_retrieval import search_text
    from lfm_retrieval.cli import _evaluate, app
    from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QRELS, SAMPLE_QUERIES
    from lfm_retrieval.evaluation import load_queries
    from lfm_retrieval.stores import open_store

    dense, runner, store = reference[0], CliRunner(), "memory://demo-over-serve"
    demo = runner.invoke(app, ["demo", "--base-url", serve_url, "--store", store, "-k", "3"])
    assert demo.exit_code == 0, demo.output
    assert demo.stdout.startswith(
        f"indexed 319 records (319 read) into {store} with {dense_path.name} at {serve_url}\n"
    )
    rows = [json.loads(line) for line in Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines()[::40]]
    texts = {f"{r['sku']}/{r['locale']}": f"{r['title']}. {r['category']}. {r['description']}" for r in rows}
    with open_store(store) as opened:
        stored = {record.key: record.vector for record in opened.scan() if record.key in texts}
        assert (
            np.abs(np.stack([stored[key] for key in texts]) - dense.encode_documents(list(texts.values()))).max()
            <= 1e-5
        )
        qid, query = next(iter(load_queries(SAMPLE_QUERIES).items()))
        hits = search_text(opened, query, dense=dense, k=3)
        metrics = _evaluate(opened, {"dense": dense}, SAMPLE_QUERIES, SAMPLE_QRELS, 10)
    printed = [f"  {n}. {hit.score:.3f}  {hit.key:<16} {hit.payload['title']}" for n, hit in enumerate(hits, 1)]
    assert "\n".join([f"{qid}: {query}", *printed]) in demo.stdout
    assert f"nDCG@10 {metrics['ndcg@10']:.3f}  recall@10 {metrics['recall@10']:.3f} over 24 queries" in demo.stdout
    both = runner.invoke(app, ["demo", "--offline", "--base-url", serve_url])
    assert both.exit_code == 2 and "--offline" in both.output and "--base-url" in both.output


def llama_server_app(reference: ColBERTEncoder, sent: list[list[int]], pooled: bool = False) -> object:
    """llama.cpp's ``llama-server --pooling none`` ``/embedding`` shape: token ids in, one vector per
    token out (unnormalised), computed by the torch model with every token attended to."""
    import torch

    app = fastapi.FastAPI()
    model = reference.model

    def token_vectors(ids: list[int]) -> list[list[float]]:
        with torch.inference_mode():
            tensor = torch.tensor([ids])
            out = model({"input_ids": tensor, "attention_mask": torch.ones_like(tensor)})["token_embeddings"][0]
        rows = out.float() * 3.0  # llama-server does not normalise: the client does
        return (rows.mean(0, keepdim=True) if pooled else rows).tolist()

    @app.post("/embedding")
    def embedding(body: dict) -> object:
        sent.extend(body["content"])
        return [
            {"index": i, "embedding": run_on_model_thread(token_vectors, ids)} for i, ids in enumerate(body["content"])
        ]

    return app


def test_colbert_over_llama_server_applies_pylates_rules_on_the_client(reference, colbert_path) -> None:
    colbert, sent = reference[1], []
    server = Server(llama_server_app(colbert, sent))
    try:
        remote = ColBERTEncoder(str(colbert_path), base_url=server.url)
        assert remote.runtime.server == "llama-server" and remote.dimension == colbert.dimension
        for got, expected in zip(remote.encode_documents(DOCUMENTS), colbert.encode_documents(DOCUMENTS), strict=True):
            assert got.shape == expected.shape, "the [D] prefix added and the skiplist tokens dropped, as PyLate does"
            np.testing.assert_allclose(got, expected, atol=1e-5)
        sent.clear()
        queries = remote.encode_queries(QUERIES)
        assert [q.shape for q in queries] == [(colbert.query_length, colbert.dimension)] * len(QUERIES)
        rules = remote.runtime.rules
        for ids in sent:  # BOS, [Q], the text, then the expansion token up to 32
            assert (
                len(ids) == colbert.query_length and ids[1] == rules.query_prefix_id and ids[-1] == rules.expansion_id
            )
    finally:
        server.stop()
    pooled = Server(llama_server_app(colbert, [], pooled=True))
    try:
        with pytest.raises(RemoteError, match="start llama-server with --pooling none"):
            ColBERTEncoder(str(colbert_path), base_url=pooled.url)
    finally:
        pooled.stop()


def test_the_framework_rerankers_run_on_a_server(reference, serve_url) -> None:
    pytest.importorskip("langchain_lfm")
    pytest.importorskip("llama_index.postprocessor.lfm")
    from langchain_core.documents import Document
    from llama_index.core.schema import NodeWithScore, TextNode

    from langchain_lfm import LFMColBERTReranker
    from llama_index.postprocessor.lfm import LFMColBERTRerank

    colbert = reference[1]
    documents = [Document(page_content=text) for text in DOCUMENTS]
    local = LFMColBERTReranker.from_encoder(colbert, top_n=3).compress_documents(documents, QUERIES[0])
    remote = LFMColBERTReranker(base_url=serve_url, top_n=3).compress_documents(documents, QUERIES[0])
    assert [d.page_content for d in remote] == [d.page_content for d in local]
    np.testing.assert_allclose(
        [d.metadata["relevance_score"] for d in remote], [d.metadata["relevance_score"] for d in local], atol=1e-5
    )
    nodes = [NodeWithScore(node=TextNode(text=text), score=0.0) for text in DOCUMENTS]
    served = LFMColBERTRerank(top_n=3, base_url=serve_url)
    ranked = served.postprocess_nodes(nodes, query_str=QUERIES[0])
    assert [n.node.get_content() for n in ranked] == [d.page_content for d in local]


def attending_to_expansion(colbert_path: Path, folder: Path) -> ColBERTEncoder:
    """The torch runtime on a copy of the checkpoint saved with PyLate's ``attend_to_expansion_tokens``
    true: queries whose expansion tokens are attended to, as a server given the token ids computes them."""
    shutil.copytree(colbert_path, folder)
    config_file = folder / "config_sentence_transformers.json"
    config = json.loads(config_file.read_text())
    config_file.write_text(json.dumps({**config, "attend_to_expansion_tokens": True}))
    return ColBERTEncoder(str(folder), device="cpu")


def test_colbert_over_vllm_pooling_gets_the_rules_once(reference, serve_url, colbert_path, tmp_path) -> None:
    # serve's /pooling answers as vLLM's does: the ids as sent, no prefix, expansion or skiplist
    colbert = reference[1]
    remote = ColBERTEncoder(str(colbert_path), base_url=serve_url, api="vllm")
    assert remote.runtime.server == "vllm" and remote.dimension == colbert.dimension
    for got, expected in zip(remote.encode_documents(DOCUMENTS), colbert.encode_documents(DOCUMENTS), strict=True):
        assert got.shape == expected.shape, "the [D] prefix added and the skiplist tokens dropped, once"
        np.testing.assert_allclose(got, expected, atol=1e-5)
    queries = remote.encode_queries(QUERIES)
    attending = attending_to_expansion(colbert_path, tmp_path / "attending").encode_queries(QUERIES)
    for got, expected in zip(queries, attending, strict=True):
        assert got.shape == expected.shape == (colbert.query_length, colbert.dimension), "[Q] and expansion, once"
        np.testing.assert_allclose(got, expected, atol=1e-5)
    masked = colbert.encode_queries(QUERIES)  # PyLate's default hides the expansion tokens from attention
    assert max(float(np.abs(g - m).max()) for g, m in zip(queries, masked, strict=True)) > 1e-3


def test_pooling_route_answers_in_vllms_shapes(reference, serve_url) -> None:
    colbert = reference[1]
    text = "Trail running shoes, waterproof."
    ids = colbert.model.tokenizer(text)["input_ids"]
    with httpx.Client(base_url=serve_url) as client:
        answer = client.post("/pooling", json={"input": [text], "task": "token_embed"}).json()
        assert (answer["object"], answer["id"][:5], answer["usage"]["prompt_tokens"]) == ("list", "pool-", len(ids))
        (row,) = answer["data"]
        assert (row["index"], row["object"]) == (0, "pooling")
        vectors = np.asarray(row["data"], np.float32)
        assert vectors.shape == (len(ids), colbert.dimension), "one vector per token, BOS included, nothing dropped"
        np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
        by_ids = client.post("/pooling", json={"input": ids, "model": colbert.model_name}).json()["data"][0]["data"]
        np.testing.assert_allclose(by_ids, vectors, atol=1e-6)
        refused = {
            "embed": ({"input": text, "task": "embed"}, 400, "task='embed' is not served"),
            "model": ({"input": text, "model": "org/other"}, 404, "the model 'org/other' does not exist"),
            "empty": ({"input": []}, 422, "input is required"),
            "ids": ({"input": [[1, -2]]}, 422, r"input\[0\] must be a non-empty text"),
        }
        for body, status, message in refused.values():
            response = client.post("/pooling", json=body)
            assert response.status_code == status and re.search(message, response.json()["error"]), response.text


def vllm_like_app(serve_url: str) -> object:
    """vLLM's ``GET /version`` and ``POST /pooling``, the latter answered by a live ``serve``."""
    app = fastapi.FastAPI()

    @app.get("/version")
    def version() -> object:
        return {"version": "0.0.0-test"}

    @app.post("/pooling")
    def pooling(body: dict) -> object:
        return httpx.post(f"{serve_url}/pooling", json=body, timeout=60).json()

    return app


def test_vllm_is_detected_by_its_version_route(reference, serve_url, colbert_path) -> None:
    server = Server(vllm_like_app(serve_url))
    try:
        remote = ColBERTEncoder(str(colbert_path), base_url=server.url)
        assert remote.runtime.server == "vllm"
        expected = reference[1].encode_documents(DOCUMENTS[:2])
        for got, want in zip(remote.encode_documents(DOCUMENTS[:2]), expected, strict=True):
            np.testing.assert_allclose(got, want, atol=1e-5)
    finally:
        server.stop()


def test_a_server_kind_named_wrongly_is_one_line(openai_url, colbert_path) -> None:
    with pytest.raises(ValueError, match="api must be one of 'auto', 'serve', 'llama-server', 'vllm', not 'tei'"):
        ColBERTEncoder(str(colbert_path), base_url=openai_url, api="tei")
    with pytest.raises(RemoteError, match="is not an lfm-retrieval server \\(no GET /info\\), but api='serve'"):
        ColBERTEncoder(str(colbert_path), base_url=openai_url, api_key=API_KEY, api="serve")
    with pytest.raises(RemoteError, match="answered 404"):  # no /pooling there
        ColBERTEncoder(str(colbert_path), base_url=openai_url, api_key=API_KEY, api="vllm")
    with pytest.raises(ValueError, match="api='vllm' names the kind of server at base_url="):
        ColBERTEncoder(str(colbert_path), api="vllm")

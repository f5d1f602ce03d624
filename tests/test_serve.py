"""`lfm-retrieval serve` on loopback: a real uvicorn server, real tiny models, real stores."""

from __future__ import annotations

import asyncio
import base64
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from itertools import count
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from lfm_retrieval import ColBERTEncoder, DenseEncoder, rerank, search_text  # noqa: E402
from lfm_retrieval.catalog import CatalogJob  # noqa: E402
from lfm_retrieval.serve import Limits, create_app  # noqa: E402
from lfm_retrieval.stores import open_store  # noqa: E402

TEXTS = ["Wireless headphones", "Trail shoes, waterproof", "Une gourde en acier inoxydable de 750 ml", "Kopfhörer!"]
_names = count()


class Server:
    """uvicorn in a thread on a socket bound to 127.0.0.1:0."""

    def __init__(self, app: object) -> None:
        self.socket = socket.socket()
        self.socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.socket.getsockname()[1]}"
        config = uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=30)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.socket]}, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 60
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "server did not start"
            time.sleep(0.02)
        self.client = httpx.Client(base_url=self.url, timeout=60)

    def stop(self) -> None:
        self.client.close()
        self.server.should_exit = True
        self.thread.join(60)
        self.socket.close()


def make_catalog(n: int = 24) -> list[dict]:
    return [
        {"sku": f"SKU-{i:03d}", "title": f"{TEXTS[i % 4]} model {i}", "brand": "acme" if i % 2 else "zenith"}
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def encoders(dense_path: Path, colbert_path: Path) -> tuple[DenseEncoder, ColBERTEncoder]:
    """The server's own encoders (the tests compare with other, in-process instances)."""
    return DenseEncoder(str(dense_path), device="cpu"), ColBERTEncoder(str(colbert_path), device="cpu")


@pytest.fixture(scope="module")
def reference(dense_path: Path, colbert_path: Path) -> tuple[DenseEncoder, ColBERTEncoder]:
    return DenseEncoder(str(dense_path), device="cpu"), ColBERTEncoder(str(colbert_path), device="cpu")


@pytest.fixture(scope="module")
def stores(reference: tuple[DenseEncoder, ColBERTEncoder]) -> dict:
    dense, colbert = reference
    out = {}
    for name, kind in (("dense", "dense"), ("colbert", "multivector"), ("hybrid", "hybrid")):
        store = open_store(f"memory://serve-{name}-{next(_names)}", kind=kind)
        first = dense if kind != "multivector" else colbert
        late = colbert if kind == "hybrid" else None
        job = CatalogJob(
            first, store, text="{title}", key="{sku}", payload=["sku", "brand"], colbert=late, progress=False
        )
        job.run(make_catalog())
        out[name] = store
    return out


@pytest.fixture(scope="module")
def server(encoders: tuple[DenseEncoder, ColBERTEncoder], stores: dict) -> Iterator[Server]:
    limits = Limits(max_inputs=8, max_body_bytes=20_000)
    running = Server(create_app(*encoders, stores=stores, limits=limits))
    yield running
    running.stop()


def post(server: Server, route: str, body: object) -> httpx.Response:
    return server.client.post(route, json=body)


@contextmanager
def serve_command(args: list[str], log: Path, timeout: float = 120) -> Iterator[tuple[subprocess.Popen, str]]:
    """``lfm-retrieval serve ARGS --port 0`` in a child process, its output in ``log``: the process and the
    URL it logged once listening; killed on leaving the block if it still runs."""
    command = [sys.executable, "-m", "lfm_retrieval.cli", "serve", *args, "--port", "0"]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
    try:
        deadline = time.monotonic() + timeout
        while not (match := re.search(r"running on (http://127\.0\.0\.1:\d+)", log.read_text())):
            assert process.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        yield process, match.group(1)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(30)


# -- vectors over HTTP == in-process -------------------------------------------------------------
@pytest.mark.parametrize("side", ["query", "document"])
def test_embed_equals_in_process(server: Server, reference: tuple, side: str) -> None:
    dense = reference[0]
    expected = dense.encode_queries(TEXTS) if side == "query" else dense.encode_documents(TEXTS)
    got = post(server, "/embed", {"inputs": TEXTS, "prompt_name": side})
    assert got.status_code == 200, got.text
    assert np.abs(np.asarray(got.json(), np.float32) - expected).max() <= 1e-6
    one = post(server, "/embed", {"inputs": TEXTS[0], "prompt_name": side}).json()
    assert np.abs(np.asarray(one, np.float32) - expected[:1]).max() <= 1e-6


@pytest.mark.parametrize("side", ["query", "document"])
@pytest.mark.parametrize("encoding", ["float", "base64"])
def test_openai_route_equals_in_process(server: Server, reference: tuple, side: str, encoding: str) -> None:
    dense = reference[0]
    expected = dense.encode_queries(TEXTS) if side == "query" else dense.encode_documents(TEXTS)
    body = {"input": TEXTS, "model": "any", "input_type": side, "encoding_format": encoding}
    got = post(server, "/v1/embeddings", body)
    assert got.status_code == 200, got.text
    data = got.json()["data"]
    assert [row["index"] for row in data] == list(range(len(TEXTS)))
    if encoding == "base64":
        vectors = np.stack([np.frombuffer(base64.b64decode(row["embedding"]), "<f4") for row in data])
    else:
        vectors = np.asarray([row["embedding"] for row in data], np.float32)
    assert np.abs(vectors - expected).max() <= 1e-6


@pytest.mark.parametrize("side", ["query", "document"])
def test_embed_multivector_equals_in_process(server: Server, reference: tuple, side: str) -> None:
    colbert = reference[1]
    expected = colbert.encode_queries(TEXTS) if side == "query" else colbert.encode_documents(TEXTS)
    got = post(server, "/embed_multivector", {"inputs": TEXTS, "prompt_name": side})
    assert got.status_code == 200, got.text
    for tokens, want in zip(got.json(), expected, strict=True):
        assert np.asarray(tokens).shape == want.shape
        assert np.abs(np.asarray(tokens, np.float32) - want).max() <= 1e-6


def test_rerank_equals_lfm_rerank(server: Server, reference: tuple) -> None:
    query, candidates = "waterproof shoes", [*TEXTS, "Trail shoes"]
    expected = rerank(query, candidates, reference[1])
    got = post(server, "/rerank", {"query": query, "texts": candidates, "return_text": True})
    assert got.status_code == 200, got.text
    rows = got.json()
    assert [row["index"] for row in rows] == [r.index for r in expected]
    assert np.allclose([row["score"] for row in rows], [r.score for r in expected], rtol=0, atol=1e-5)
    assert [row["text"] for row in rows] == [candidates[r.index] for r in expected]


@pytest.mark.parametrize("name", ["dense", "colbert", "hybrid"])
def test_search_equals_search_text(server: Server, reference: tuple, stores: dict, name: str) -> None:
    dense, colbert = reference
    store, query, flt = stores[name], "Trail shoes model", {"brand": "acme"}
    expected = search_text(store, query, dense=dense, colbert=colbert, k=5, filter=flt, prefetch=12)
    got = post(server, "/search", {"store": name, "query": query, "k": 5, "filter": flt, "prefetch": 12})
    assert got.status_code == 200, got.text
    hits = got.json()["hits"]
    assert [h["key"] for h in hits] == [h.key for h in expected] and len(hits) == 5
    assert np.allclose([h["score"] for h in hits], [h.score for h in expected], rtol=0, atol=1e-5)
    assert all(h["payload"]["brand"] == "acme" for h in hits)


# -- bad requests: a 4xx naming the problem ------------------------------------------------------
BAD = [
    ("/v1/embeddings", {"input": ["x"]}, 422, "input_type is required"),
    ("/v1/embeddings", {"input": ["x"], "input_type": "passage"}, 422, "input_type must be 'query' or 'document'"),
    ("/embed", {"inputs": ["x"]}, 422, "prompt_name is required"),
    ("/embed", {"inputs": ["x"], "prompt_name": "search"}, 422, "prompt_name must be 'query' or 'document'"),
    ("/embed", {"inputs": [], "prompt_name": "query"}, 422, "inputs is empty"),
    ("/embed", {"inputs": ["ok", "  "], "prompt_name": "query"}, 422, "inputs[1] is empty"),
    ("/embed", {"inputs": ["ok", 3], "prompt_name": "document"}, 422, "inputs[1] is int"),
    ("/embed", {"inputs": {"a": 1}, "prompt_name": "query"}, 422, "must be a string or a list of strings"),
    ("/embed", {"inputs": ["x"] * 9, "prompt_name": "query"}, 413, "at most 8 per request"),
    ("/embed_multivector", {"inputs": [None], "prompt_name": "query"}, 422, "inputs[0] is None"),
    ("/rerank", {"query": "", "texts": ["a"]}, 422, "query is empty or only whitespace"),
    ("/rerank", {"query": "q"}, 422, "texts is required"),
    # options the server cannot honour are refused, never ignored
    ("/embed", {"inputs": ["x"], "prompt_name": "query", "normalize": False}, 422, "normalize=false is not supported"),
    ("/embed", {"inputs": ["x"], "prompt_name": "query", "truncate": False}, 422, "truncate=false is not supported"),
    ("/embed_multivector", {"inputs": ["x"], "prompt_name": "query", "normalize": False}, 422, "normalize=false"),
    ("/rerank", {"query": "q", "texts": ["a"], "raw_scores": False}, 422, "raw_scores=false is not supported"),
    ("/rerank", {"query": "q", "texts": ["a"], "truncate": False}, 422, "truncate=false is not supported"),
    ("/search", {"store": "nope", "query": "q"}, 404, "no store named 'nope'"),
    ("/search", {"store": "dense", "query": "q", "k": 0}, 422, "k: Input should be greater than or equal to 1"),
    ("/search", {"store": "dense", "query": "q", "filter": {"price": {"around": 3}}}, 422, "around"),
]


@pytest.mark.parametrize(("route", "body", "status", "message"), BAD, ids=[f"{r}-{m[:24]}" for r, _, _, m in BAD])
def test_bad_request_gets_4xx_naming_the_problem(server: Server, route: str, body: dict, status: int, message: str):
    got = post(server, route, body)
    assert got.status_code == status, got.text
    assert message in got.json()["error"]


def test_a_store_that_is_not_a_store_is_refused_at_start(encoders: tuple) -> None:
    with pytest.raises(TypeError, match="store 'x' is a dict, not a dense, multivector or hybrid store"):
        create_app(*encoders, stores={"x": {}})


def test_options_sent_with_the_served_value_are_accepted(server: Server, reference: tuple) -> None:
    body = {"inputs": TEXTS, "prompt_name": "query", "normalize": True, "truncate": True}
    got = post(server, "/embed", body)
    assert got.status_code == 200, got.text
    assert np.abs(np.asarray(got.json(), np.float32) - reference[0].encode_queries(TEXTS)).max() <= 1e-6
    assert post(server, "/embed_multivector", body).status_code == 200
    got = post(server, "/rerank", {"query": "q", "texts": TEXTS, "raw_scores": True, "truncate": True})
    assert got.status_code == 200 and len(got.json()) == len(TEXTS)


def test_over_long_body_and_bad_json(server: Server) -> None:
    got = post(server, "/embed", {"inputs": ["x" * 30_000], "prompt_name": "query"})
    assert got.status_code == 413 and "larger than 20000 bytes" in got.json()["error"]
    got = server.client.post("/embed", content=b"{not json", headers={"content-type": "application/json"})
    assert got.status_code == 422 and "JSON" in got.json()["error"]
    assert post(server, "/embed", {"inputs": ["still serving"], "prompt_name": "query"}).status_code == 200


def test_health_info_metrics(server: Server) -> None:
    assert server.client.get("/health").json() == {"status": "ok"}
    info = server.client.get("/info").json()
    assert info["models"]["dense"]["dimension"] > 0 and info["stores"]["hybrid"]["kind"] == "hybrid"
    assert info["models"]["dense"]["query_precision"] == "float32"  # a small model: "auto" keeps float32
    post(server, "/embed", {"inputs": TEXTS, "prompt_name": "query"})
    metrics = server.client.get("/metrics").text
    for name in ('lfm_queue_depth{model="dense"}', 'lfm_batch_texts_bucket{le="4.0",model="dense"}'):
        assert name in metrics, metrics
    assert re.search(r'lfm_request_seconds_count\{route="/embed"\} [1-9]', metrics)
    assert re.search(r'lfm_requests_total\{route="/embed",status="200"\} [1-9]', metrics)


# -- overload and shutdown ------------------------------------------------------------------------
def test_full_queue_answers_429_and_keeps_serving(dense_path: Path) -> None:
    encoder = DenseEncoder(str(dense_path), device="cpu")
    # A one-request queue whose first request holds its batch open for 5 s (time to send another).
    app = create_app(encoder, limits=Limits(max_queue=1, max_wait_ms=5000, max_batch_texts=64))
    server = Server(app)
    try:
        with ThreadPoolExecutor(1) as pool:
            first = pool.submit(post, server, "/embed", {"inputs": ["first"], "prompt_name": "query"})
            deadline = time.monotonic() + 10
            while encoder.query_batcher.queue_depth < 1:
                assert time.monotonic() < deadline, "the first request never queued"
                time.sleep(0.01)
            refused = post(server, "/embed", {"inputs": ["second"], "prompt_name": "query"})
            assert refused.status_code == 429 and "queue is full" in refused.json()["error"]
            assert refused.headers["retry-after"] == "1"
            assert first.result(30).status_code == 200
        again = post(server, "/embed", {"inputs": ["third"], "prompt_name": "query"})
        assert again.status_code == 200
        metrics = server.client.get("/metrics").text
        assert 'lfm_requests_total{route="/embed",status="429"} 1.0' in metrics
    finally:
        server.stop()


def test_shutdown_during_load_loses_no_accepted_request(dense_path: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with serve_command(["--model", str(dense_path)], log) as (process, url):
        answered, refused, lost = [], [], []
        stop = threading.Event()

        def client(worker: int) -> None:
            # A new connection per request: a request either reaches the server or is refused.
            with httpx.Client(base_url=url, timeout=60, limits=httpx.Limits(max_keepalive_connections=0)) as http:
                for i in range(200):  # bounded in count; and in time by the deadline below
                    if stop.is_set() or time.monotonic() > deadline:
                        return
                    text = f"query {worker} {i}"
                    try:
                        got = http.post("/embed", json={"inputs": [text], "prompt_name": "query"})
                    except (httpx.ConnectError, httpx.ReadError, httpx.RemoteProtocolError):
                        # Refused, or reset while still in the kernel's accept backlog when the
                        # listening socket closed: never accepted by the server. The tally below
                        # proves every request the server accepted reached its client.
                        refused.append(text)
                        return
                    except httpx.TransportError as exc:
                        lost.append((text, repr(exc)))
                        return
                    (answered if got.status_code == 200 else lost).append((text, got.status_code))

        deadline = time.monotonic() + 60
        threads = [threading.Thread(target=client, args=(w,)) for w in range(8)]
        for thread in threads:
            thread.start()
        while len(answered) < 20 and time.monotonic() < deadline:
            time.sleep(0.01)
        process.send_signal(signal.SIGTERM)
        # uvicorn re-raises SIGTERM after its graceful shutdown: a clean exit reads -SIGTERM.
        assert process.wait(60) in (0, -signal.SIGTERM), log.read_text()
        stop.set()
        for thread in threads:
            thread.join(60)
    text = log.read_text()
    tally = re.search(r"answered (\d+) of (\d+) accepted requests", text)
    assert tally, text
    assert tally.group(1) == tally.group(2), text  # every accepted request was answered
    assert not lost, lost[:5]
    assert len(answered) >= 20 and int(tally.group(1)) == len(answered)


# -- the framework classes pointed at the server ----------------------------------------------------
def test_langchain_embeddings_over_http(server: Server, reference: tuple) -> None:
    from langchain_lfm import LFMEmbeddings

    dense = reference[0]
    remote = LFMEmbeddings(base_url=server.url)
    queries, documents = dense.encode_queries(TEXTS[:2]), dense.encode_documents(TEXTS)
    assert np.abs(np.asarray(remote.embed_query(TEXTS[0])) - queries[0]).max() <= 1e-6
    assert np.abs(np.asarray(remote.embed_documents(TEXTS)) - documents).max() <= 1e-6

    async def both() -> tuple:
        return await asyncio.gather(remote.aembed_query(TEXTS[1]), remote.aembed_documents(TEXTS))

    query, docs = asyncio.run(both())
    assert np.abs(np.asarray(query) - queries[1]).max() <= 1e-6
    assert np.abs(np.asarray(docs) - documents).max() <= 1e-6
    assert remote.dimension == dense.dimension


def test_llamaindex_embedding_over_http(server: Server, reference: tuple) -> None:
    from llama_index.embeddings.lfm import LFMEmbedding

    dense = reference[0]
    remote = LFMEmbedding(base_url=server.url)
    queries, documents = dense.encode_queries(TEXTS[:2]), dense.encode_documents(TEXTS)
    assert np.abs(np.asarray(remote.get_query_embedding(TEXTS[0])) - queries[0]).max() <= 1e-6
    assert np.abs(np.asarray(remote.get_text_embedding_batch(TEXTS)) - documents).max() <= 1e-6

    async def both() -> tuple:
        return await asyncio.gather(remote.aget_query_embedding(TEXTS[1]), remote.aget_text_embedding(TEXTS[2]))

    query, doc = asyncio.run(both())
    assert np.abs(np.asarray(query) - queries[1]).max() <= 1e-6
    assert np.abs(np.asarray(doc) - documents[2]).max() <= 1e-6
    assert remote.dimension == dense.dimension


def test_huggingface_hub_tei_client_with_prompt_name(server: Server, reference: tuple, monkeypatch) -> None:
    """A third-party TEI client that sends prompt_name works as is (loopback: offline mode lifted)."""
    from huggingface_hub import InferenceClient, constants

    monkeypatch.setattr(constants, "is_offline_mode", lambda: False)

    dense = reference[0]
    client = InferenceClient(model=f"{server.url}/embed")
    query = client.feature_extraction(TEXTS[0], prompt_name="query")
    document = client.feature_extraction(TEXTS[0], prompt_name="document")
    assert np.abs(np.asarray(query, np.float32).reshape(-1) - dense.encode_queries(TEXTS[:1])[0]).max() <= 1e-6
    assert np.abs(np.asarray(document, np.float32).reshape(-1) - dense.encode_documents(TEXTS[:1])[0]).max() <= 1e-6


def test_core_does_not_import_fastapi() -> None:
    modules = "lfm_retrieval, lfm_retrieval.cli, lfm_retrieval.runtimes.remote"
    code = f"import sys, {modules}; print('fastapi' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "False\n"

"""The FastAPI app of ``lfm-retrieval serve``: both models, explicit sides, stores, metrics."""

from __future__ import annotations

import asyncio
import base64
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder, Side
from lfm_retrieval.errors import BatcherClosed, LFMRetrievalError, QueueFull, check_query
from lfm_retrieval.scoring import rerank
from lfm_retrieval.search import asearch_text, check_models
from lfm_retrieval.serve.metrics import Metrics
from lfm_retrieval.serve.pooling import PoolingRequest, check_task, pooling_response, token_ids_of, token_vectors
from lfm_retrieval.serve.requests import (
    EmbedRequest,
    OpenAIEmbeddingsRequest,
    RequestError,
    RerankRequest,
    SearchRequest,
    check_options,
    side_of,
    texts_of,
)
from lfm_retrieval.stores import Store
from lfm_retrieval.stores.kinds import StoreKind

logger = logging.getLogger("uvicorn.error")  # shown with uvicorn's own start-up and shutdown lines
ROUTES = (
    "/embed",
    "/v1/embeddings",
    "/embed_multivector",
    "/pooling",
    "/rerank",
    "/search",
    "/health",
    "/info",
    "/metrics",
)

#: /pooling runs the torch ColBERT model on token ids as sent; a GGUF or remote ColBERT model cannot.
POOLING_NEEDS_TORCH = (
    "/pooling is served only with a ColBERT model on the torch runtime (it runs the torch model on the token "
    "ids as sent); this server's ColBERT model runs on llama.cpp (a GGUF file) or on another server: "
    "its token vectors are on /embed_multivector"
)


@dataclass(frozen=True)
class Limits:
    """What one request may ask and how much may wait (each is a ``serve`` option)."""

    max_inputs: int = 256
    """Texts per request (413 above)."""
    max_body_bytes: int = 4 << 20
    """Request body size (413 above)."""
    max_queue: int = 1024
    """Query requests waiting per model, and document requests in flight (429 above)."""
    max_wait_ms: float = 0.0
    """How long the first waiting query holds its batch open for others."""
    max_batch_texts: int = 64
    """Texts per coalesced query model call."""
    load_wait: float = 0.0
    """Under load, how long (times the last model call) a batch waits for the callers it last served."""


class JSON(Response):
    """orjson: numpy arrays straight to JSON, several times faster than the stdlib for vectors."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


def error(status: int, message: str, kind: str, headers: dict[str, str] | None = None) -> JSON:
    """TEI's error body: ``{"error": ..., "error_type": ...}``."""
    return JSON({"error": message, "error_type": kind}, status_code=status, headers=headers)


class Guard:
    """ASGI middleware: body-size limit, request accounting and latency, for every route."""

    def __init__(self, app: Any, limits: Limits, metrics: Metrics, tally: dict[str, int]) -> None:
        self.app, self.limits, self.metrics, self.tally = app, limits, metrics, tally

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = {"code": 500}
        self.tally["accepted"] += 1
        self.metrics.in_flight.inc()
        started = time.perf_counter()

        async def send_status(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            body = await self._read_body(receive)
            if body is None:
                limit = self.limits.max_body_bytes
                msg = f"request body is larger than {limit} bytes (the server's --max-body-bytes)"
                await error(413, msg, "Validation")(scope, receive, send_status)
            else:
                await self.app(scope, _replay(body, receive), send_status)
        finally:
            self.metrics.in_flight.dec()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
            self.metrics.requests.labels(route, str(status["code"])).inc()
            self.tally["answered"] += 1

    async def _read_body(self, receive: Callable) -> bytes | None:
        """The whole body, or None once it passes the limit (read no further)."""
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return b"".join(chunks)
            size += len(message.get("body", b""))
            if size > self.limits.max_body_bytes:
                return None
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                return b"".join(chunks)


def _replay(body: bytes, receive: Callable[[], Awaitable[dict]]) -> Callable[[], Awaitable[dict]]:
    """The body already read, then the client's own messages (a disconnect)."""
    sent = False

    async def replay() -> dict:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


class Service:
    """The encoders, stores and limits behind the routes."""

    def __init__(
        self,
        dense: DenseEncoder | None,
        colbert: ColBERTEncoder | None,
        stores: dict[str, Store],
        limits: Limits,
        metrics: Metrics,
    ) -> None:
        if dense is None and colbert is None:
            raise ValueError("serve needs a dense model, a ColBERT model or both")
        self.dense, self.colbert, self.stores, self.limits = dense, colbert, stores, limits
        self.documents_in_flight = 0
        for name, store in stores.items():  # before the encoders are configured: a bad store changes nothing
            self._check_store(name, store)
        for name, encoder in (("dense", dense), ("colbert", colbert)):
            if encoder is not None:
                batcher = encoder.set_query_batching(
                    max_wait_s=limits.max_wait_ms / 1000,
                    max_batch_texts=limits.max_batch_texts,
                    max_queue=limits.max_queue,
                    load_wait=limits.load_wait,
                )
                metrics.watch(name, batcher)

    def _check_store(self, name: str, store: Store) -> None:
        kind = StoreKind.of(store) if isinstance(store, Store) else None
        if kind is None or not isinstance(store, kind.store_class):
            raise TypeError(f"store {name!r} is a {type(store).__name__}, not a dense, multivector or hybrid store")
        for encoder in kind.encoders:
            self.need(encoder, f"store {name!r} ({kind})")
        check_models(store, self.dense, self.colbert)

    def encoders_for(self, store: Store) -> dict[str, Any]:
        """The query encoders ``store``'s kind needs, as :func:`asearch_text` takes them."""
        return {name: getattr(self, name) for name in StoreKind.of(store).encoders}

    def need(self, kind: str, what: str) -> Any:
        """The encoder of ``kind``, or a 400 naming the missing model."""
        encoder = self.dense if kind == "dense" else self.colbert
        if encoder is None:
            flag = "--model" if kind == "dense" else "--colbert"
            raise RequestError(f"{what} needs a {kind} model; this server was started without {flag}", 400)
        return encoder

    @contextmanager
    def _document_slot(self) -> Iterator[None]:
        if self.documents_in_flight >= self.limits.max_queue:
            raise QueueFull(f"{self.documents_in_flight} document requests in flight; retry later")
        self.documents_in_flight += 1
        try:
            yield
        finally:
            self.documents_in_flight -= 1

    async def encode(self, encoder: DenseEncoder | ColBERTEncoder, texts: list[str], side: Side) -> Any:
        """Queries through the micro-batcher; documents in a worker thread (bounded)."""
        if side is Side.QUERY:
            return await encoder.aencode_queries(texts)
        with self._document_slot():
            return await asyncio.to_thread(encoder.encode_documents, texts)

    def info(self) -> dict[str, Any]:
        models = {}
        for kind, encoder in (("dense", self.dense), ("colbert", self.colbert)):
            if encoder is not None:
                models[kind] = {
                    "model": encoder.model_id,
                    "path": encoder.model_name,
                    "dimension": encoder.dimension,
                    "max_length": encoder.max_length,
                    "query_precision": encoder.query_precision,
                    # what the server applies on each side, so a client knows it never adds them itself
                    **sides_of(encoder),
                }
        stores = {name: {"kind": store.kind, "uri": store.uri} for name, store in self.stores.items()}
        return {"models": models, "stores": stores, "sides": ["query", "document"], "limits": asdict(self.limits)}


def sides_of(encoder: DenseEncoder | ColBERTEncoder) -> dict[str, Any]:
    """The prompts (dense) or prefixes and lengths (ColBERT) the server applies to each side."""
    if isinstance(encoder, ColBERTEncoder):
        return {
            "query_prefix": encoder.query_prefix,
            "document_prefix": encoder.document_prefix,
            "query_length": encoder.query_length,
            "document_length": encoder.document_length,
        }
    return {"prompts": {side.value: prompt for side, prompt in encoder.prompts.items()}}


def create_app(
    dense: DenseEncoder | None = None,
    colbert: ColBERTEncoder | None = None,
    stores: dict[str, Store] | None = None,
    limits: Limits | None = None,
) -> FastAPI:
    """The server's ASGI app over loaded encoders and open stores (the caller closes the stores)."""
    limits = limits or Limits()
    metrics = Metrics()
    service = Service(dense, colbert, dict(stores or {}), limits, metrics)
    tally = {"accepted": 0, "answered": 0}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        for encoder in (dense, colbert):  # after uvicorn drained the connections
            if encoder is not None:
                encoder.query_batcher.close()
        logger.info("shutdown: answered %d of %d accepted requests", tally["answered"], tally["accepted"])

    app = FastAPI(title="lfm-retrieval serve", default_response_class=JSON, lifespan=lifespan)
    app.state.service, app.state.tally = service, tally
    app.add_middleware(Guard, limits=limits, metrics=metrics, tally=tally)

    @app.exception_handler(RequestError)
    async def _request_error(_: Request, exc: RequestError) -> JSON:
        return error(exc.status, str(exc), "Validation")

    @app.exception_handler(QueueFull)
    async def _queue_full(_: Request, exc: QueueFull) -> JSON:
        return error(429, str(exc), "Overloaded", {"Retry-After": "1"})

    @app.exception_handler(BatcherClosed)
    async def _closed(_: Request, exc: BatcherClosed) -> JSON:
        return error(503, str(exc), "Unhealthy")

    @app.exception_handler(LFMRetrievalError)
    async def _bad_input(_: Request, exc: LFMRetrievalError) -> JSON:
        return error(422, str(exc), "Validation")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSON:
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:]) or 'body'}: {e['msg']}" for e in exc.errors()]
        return error(422, "; ".join(parts), "Validation")

    @app.post("/embed")
    async def embed(body: EmbedRequest) -> JSON:
        """Dense vectors, TEI's shape: ``{"inputs": [...], "prompt_name": "query" | "document"}``."""
        side = side_of(body.prompt_name, "prompt_name")
        texts = texts_of(body.inputs, "inputs", limits.max_inputs)
        encoder = service.need("dense", "/embed")
        check_options(body, normalize=getattr(encoder, "normalize", True), truncate=True)
        return JSON(await service.encode(encoder, texts, side))

    @app.post("/embed_multivector")
    async def embed_multivector(body: EmbedRequest) -> JSON:
        """ColBERT token vectors: one (tokens, dim) list per input."""
        side = side_of(body.prompt_name, "prompt_name")
        texts = texts_of(body.inputs, "inputs", limits.max_inputs)
        encoder = service.need("colbert", "/embed_multivector")
        check_options(body, normalize=True, truncate=True)  # ColBERT token vectors are always unit length
        return JSON(list(await service.encode(encoder, texts, side)))

    @app.post("/pooling")
    async def pooling(body: PoolingRequest) -> JSON:
        """vLLM's pooling API, ``task: "token_embed"``: each input's token vectors as given (no
        ColBERT rule applied; the client applies them, as against vLLM)."""
        encoder = service.need("colbert", "/pooling")
        check_task(body, {encoder.model_id, encoder.model_name})
        model = getattr(encoder.runtime, "model", None)
        if not hasattr(model, "tokenizer"):
            raise RequestError(POOLING_NEEDS_TORCH, 501)
        rows = token_ids_of(body, model.tokenizer, limits.max_inputs, encoder.max_length)
        with service._document_slot():
            vectors = await asyncio.to_thread(token_vectors, model, rows)
        return JSON(pooling_response(encoder.model_name, vectors))

    @app.post("/v1/embeddings")
    async def openai_embeddings(body: OpenAIEmbeddingsRequest) -> JSON:
        """OpenAI's embeddings route; the side comes from ``input_type`` and is required."""
        side = side_of(body.input_type, "input_type")
        texts = texts_of(body.input, "input", limits.max_inputs)
        encoder = service.need("dense", "/v1/embeddings")
        if body.dimensions is not None and body.dimensions != encoder.dimension:
            raise RequestError(f"dimensions={body.dimensions}, but the model's vectors have {encoder.dimension}")
        vectors = await service.encode(encoder, texts, side)
        if body.encoding_format == "base64":
            data = [base64.b64encode(np.asarray(v, "<f4").tobytes()).decode() for v in vectors]
        else:
            data = list(vectors)
        rows = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(data)]
        usage = {"prompt_tokens": 0, "total_tokens": 0}
        return JSON({"object": "list", "data": rows, "model": encoder.model_id, "usage": usage})

    @app.post("/rerank")
    async def rerank_texts(body: RerankRequest) -> JSON:
        """TEI's rerank: ``[{"index", "score"}]`` best first; ColBERT MaxSim (cosine without ColBERT)."""
        query = check_query(body.query)
        texts = texts_of(body.texts, "texts", limits.max_inputs)
        check_options(body, raw_scores=True, truncate=True)
        encoder = service.colbert or service.dense
        query_vector = (await service.encode(encoder, [query], Side.QUERY))[0]
        documents = await service.encode(encoder, texts, Side.DOCUMENT)
        ranked = rerank(query_vector, documents, encoder)
        rows = [{"index": r.index, "score": r.score} for r in ranked]
        if body.return_text:
            for row in rows:
                row["text"] = texts[row["index"]]
        return JSON(rows)

    @app.post("/search")
    async def search(body: SearchRequest) -> JSON:
        """Search a store named at start-up with a query (query side of its models)."""
        store = service.stores.get(body.store)
        if store is None:
            raise RequestError(f"no store named {body.store!r}; this server has {sorted(service.stores)}", 404)
        query = check_query(body.query)
        hits = await asearch_text(
            store, query, **service.encoders_for(store), k=body.k, filter=body.filter, prefetch=body.prefetch
        )
        return JSON({"hits": [{"id": h.id, "key": h.key, "score": h.score, "payload": h.payload} for h in hits]})

    @app.get("/health")
    async def health() -> JSON:
        return JSON({"status": "ok"})

    @app.get("/info")
    async def info() -> JSON:
        return JSON(service.info())

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app

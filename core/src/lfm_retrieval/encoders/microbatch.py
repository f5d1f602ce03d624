"""Coalesce concurrent query encodes (threads and async tasks) into shared model calls.

Hand-written: no library batches calls to an in-process PyTorch model across callers
without a server around it (TorchServe/Triton/Ray Serve are servers of their own).
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from lfm_retrieval.errors import BatcherClosed, QueueFull

logger = logging.getLogger("lfm_retrieval")
Vector = TypeVar("Vector")
BatchListener = Callable[[int, int, float], None]
"""Called after every model call with (texts, requests, seconds)."""


@dataclass
class BatcherStats:
    """Running totals of a micro-batcher."""

    requests: int = 0
    texts: int = 0
    batches: int = 0
    rejected: int = 0
    largest_batch: int = 0


@dataclass
class _Request:
    texts: list[str]
    chars: int
    future: Future
    arrived: float


class MicroBatcher(Generic[Vector]):
    """Gather concurrent ``encode`` calls into one call of ``encode_batch``.

    The first waiting request opens a window of ``max_wait_s``; the batch closes when the
    window ends or when the waiting requests reach ``max_batch_texts`` texts or
    ``max_batch_chars`` characters (characters stand in for tokens: the tokenizer may not
    be used outside the encoder's lock), whichever comes first. While a model call runs,
    new requests queue, so under load batches grow without any extra wait: the default
    window is 0 (a lone query never waits). A request is never split; one larger than the
    budget runs alone.

    Under load the window adapts: when more than one request was in the last model call or
    queued while it ran, the next batch also waits until as many requests are waiting, for at
    most ``load_wait`` times that call's duration after it ended. Callers that send their next query
    as soon as the last one is answered (a client pool, a web app's workers) then come back
    into one batch, instead of the first of them running alone while the rest queue behind
    it. A lone caller never waits. Off by default (``load_wait=0``): on a 2-core CPU it gave
    fewer model calls but no measured throughput gain (docs/benchmarks.md); try 0.1 where
    a model call costs little more for a larger batch (a GPU).

    Each caller's texts are checked by ``validate`` before they are queued, so a bad input
    fails only its own caller; if a shared model call still fails, each request of that
    batch is retried alone so the error reaches only the caller that caused it.

    At most ``max_queue`` requests wait; one more raises :class:`QueueFull`. One worker
    thread runs the model calls; it exits after ``idle_exit_s`` without work (and restarts
    on the next request), so an unused encoder holds no thread.
    """

    def __init__(
        self,
        encode_batch: Callable[[list[str]], list[Vector]],
        *,
        validate: Callable[[Iterable[str]], list[str]] | None = None,
        max_wait_s: float = 0.0,
        max_batch_texts: int = 64,
        max_batch_chars: int = 64 * 512,
        max_queue: int = 1024,
        load_wait: float = 0.0,
        idle_exit_s: float = 1.0,
        name: str = "lfm-microbatch",
    ) -> None:
        if min(max_wait_s, load_wait) < 0 or min(max_batch_texts, max_batch_chars, max_queue) < 1:
            raise ValueError(
                "max_wait_s and load_wait must be >= 0 and max_batch_texts, max_batch_chars, max_queue positive"
            )
        self._encode_batch = encode_batch
        self._validate = validate or list
        self.max_wait_s = max_wait_s
        self.load_wait = load_wait
        self.max_batch_texts = max_batch_texts
        self.max_batch_chars = max_batch_chars
        self.max_queue = max_queue
        self.idle_exit_s = idle_exit_s
        self.name = name
        self.stats = BatcherStats()
        self._listeners: list[BatchListener] = []
        self._pending: deque[_Request] = deque()
        self._running = 0  # requests inside the model call now
        # the adaptive window: requests the last model call served plus those that queued during it
        # (the callers under load), and when its window ends
        self._last_call = (0, 0.0)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    # -- submitting -------------------------------------------------------------------------
    def submit(self, texts: Iterable[str]) -> Future[list[Vector]]:
        """Validate ``texts`` and queue them; the future gives one vector per text, in order."""
        texts = self._validate(texts)
        future: Future[list[Vector]] = Future()
        if not texts:
            future.set_result([])
            return future
        request = _Request(texts, sum(map(len, texts)), future, time.monotonic())
        with self._cond:
            if self._closed:
                raise BatcherClosed(f"{self.name} is closed; it accepts no new requests")
            if len(self._pending) >= self.max_queue:
                self.stats.rejected += 1
                raise QueueFull(f"{self.name} queue is full ({self.max_queue} requests waiting); retry later")
            self._pending.append(request)
            self.stats.requests += 1
            self.stats.texts += len(texts)
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name, daemon=True)
                self._thread.start()
            self._cond.notify_all()
        return future

    def encode(self, texts: Iterable[str]) -> list[Vector]:
        """One vector per text, sharing a model call with concurrent callers (blocks)."""
        return self.submit(texts).result()

    async def aencode(self, texts: Iterable[str]) -> list[Vector]:
        """:meth:`encode` for async callers: awaits the shared call without a thread per call."""
        return await asyncio.wrap_future(self.submit(texts))

    # -- observing --------------------------------------------------------------------------
    @property
    def queue_depth(self) -> int:
        """Requests waiting for a model call (not counting the one running)."""
        return len(self._pending)

    @property
    def in_flight(self) -> int:
        """Requests waiting or inside the running model call."""
        with self._cond:
            return len(self._pending) + self._running

    def add_listener(self, listener: BatchListener) -> None:
        """Call ``listener(texts, requests, seconds)`` after every model call (for metrics)."""
        self._listeners.append(listener)

    # -- shutting down ----------------------------------------------------------------------
    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, finish every queued one, then stop the worker."""
        with self._cond:
            self._closed = True
            thread = self._thread
            self._cond.notify_all()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    # -- the worker -------------------------------------------------------------------------
    def _full(self) -> bool:
        texts = chars = 0
        for request in self._pending:
            texts += len(request.texts)
            chars += request.chars
            if texts >= self.max_batch_texts or chars >= self.max_batch_chars:
                return True
        return False

    def _take_batch(self) -> list[_Request] | None:
        """Wait for a batch to close and take it; None when the worker should exit."""
        with self._cond:
            while not self._pending:
                if self._closed or (not self._cond.wait(self.idle_exit_s) and not self._pending):
                    self._thread = None
                    return None
            first = self._pending[0].arrived
            deadline = first + self.max_wait_s
            callers, load_deadline = self._last_call
            returning = callers if callers > 1 else 0  # under load: wait until as many callers are back
            while not self._closed and not self._full():
                now = time.monotonic()
                if now < deadline:
                    self._cond.wait(deadline - now)
                elif len(self._pending) < returning and now < load_deadline:
                    self._cond.wait(load_deadline - now)
                else:
                    break
            batch = [self._pending.popleft()]
            texts, chars = len(batch[0].texts), batch[0].chars
            while self._pending:
                nxt = self._pending[0]
                if texts + len(nxt.texts) > self.max_batch_texts or chars + nxt.chars > self.max_batch_chars:
                    break
                batch.append(self._pending.popleft())
                texts, chars = texts + len(nxt.texts), chars + nxt.chars
            self._running = len(batch)
            return batch

    def _work(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [request for request in batch if request.future.set_running_or_notify_cancel()]
            try:
                if live:
                    self._run(live)
            finally:
                with self._cond:
                    self._running = 0

    def _run(self, batch: list[_Request]) -> None:
        texts = [text for request in batch for text in request.texts]
        started = time.perf_counter()
        try:
            vectors = self._encode_batch(texts)
            if len(vectors) != len(texts):
                raise RuntimeError(f"encode_batch returned {len(vectors)} vectors for {len(texts)} texts")
        except Exception as exc:
            if len(batch) == 1:
                batch[0].future.set_exception(exc)
            else:  # isolate the request that failed: each one alone
                for request in batch:
                    self._run([request])
            return
        seconds = time.perf_counter() - started
        with self._cond:
            self._last_call = (len(batch) + len(self._pending), time.monotonic() + self.load_wait * seconds)
        start = 0
        for request in batch:
            request.future.set_result(vectors[start : start + len(request.texts)])
            start += len(request.texts)
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(texts))
        for listener in self._listeners:
            try:
                listener(len(texts), len(batch), seconds)
            except Exception:  # a metrics hook must not stop the worker
                logger.exception("micro-batcher listener %r failed", listener)


async def aencode_query(query: str, *encoders: Any) -> tuple[Any, ...]:
    """One query's vector from each encoder (``None`` for a ``None`` encoder), their coalesced
    model calls awaited together: what the frameworks' async retrievers use."""

    async def one(encoder: Any) -> Any:
        return None if encoder is None else (await encoder.aencode_queries([query]))[0]

    return tuple(await asyncio.gather(*(one(encoder) for encoder in encoders)))

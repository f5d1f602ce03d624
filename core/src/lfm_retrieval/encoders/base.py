"""What the dense and the late-interaction encoder share: sides, streaming, batching, stats."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from lfm_retrieval.encoders.batching import EncodeStats, Side, length_sorted_batches, validated_chunks
from lfm_retrieval.encoders.loading import (
    QUERY_COPY_MIN_AGREEMENT,
    Quantize,
    fastest,
    precision_of,
    query_copy,
    query_copy_candidates,
)
from lfm_retrieval.encoders.microbatch import MicroBatcher
from lfm_retrieval.encoders.model_thread import model_thread_id, run_on_model_thread
from lfm_retrieval.int8 import CALIBRATION_QUERIES, mean_cosine

logger = logging.getLogger("lfm_retrieval")
Vector = TypeVar("Vector")


class Encoder(ABC, Generic[Vector]):
    """Encodes texts on an explicit side, in bounded memory, in length-sorted batches.

    Subclasses say how long each text is in tokens (after prompt/prefix and truncation)
    and how to encode one batch of texts; ``max_padding`` (the fraction of a batch's
    tokens that may be padding, 0 = equal-length batches) is set by the subclass once it
    knows whether its model's pads are inert and which device it runs on.
    """

    def __init__(self, batch_size: int | None, max_batch_tokens: int | None, chunk_size: int) -> None:
        if any(value is not None and value < 1 for value in (batch_size, max_batch_tokens, chunk_size)):
            raise ValueError("batch_size, max_batch_tokens and chunk_size must be positive")
        # None: the subclass sets the device's default once the model is loaded
        self.batch_size = batch_size or 0
        self.max_batch_tokens = max_batch_tokens or 0
        self.chunk_size = chunk_size
        self.stats = EncodeStats()
        self.max_padding = 0.0
        # Fast tokenizers fail ("Already borrowed") when two threads use one at once, as
        # async framework calls do: one model call at a time per encoder.
        self._model_lock = threading.Lock()
        self._query_batcher: MicroBatcher[Vector] | None = None
        self._batcher_lock = threading.Lock()
        self.query_model: Any = None  # the int8 or bfloat16 copy queries run on, when there is one
        # each query copy tried when the model loaded: its mean cosine to float32 on real queries
        self.query_agreement: dict[str, float] = {}
        # ... and, where more than one agreed, its best time on one real query (seconds)
        self.query_seconds: dict[str, float] = {}

    model_name: str
    model: Any

    @property
    def query_precision(self) -> str:
        """What queries run in: ``"int8"``, ``"bfloat16"`` (a query copy) or the model's own."""
        return precision_of(self.query_model if self.query_model is not None else self.model)

    def _model_for(self, side: Side) -> Any:
        return self.query_model if side is Side.QUERY and self.query_model is not None else self.model

    def _prepare_query_model(self, quantize: Quantize, dtype: torch.dtype | None) -> None:
        """Give queries a reduced-precision copy of the model where :func:`query_copy_candidates`
        says so. Each candidate must agree with float32 on real queries (:data:`CALIBRATION_QUERIES`,
        mean cosine >= :data:`QUERY_COPY_MIN_AGREEMENT`): with ``"auto"`` one that does not is
        dropped, and of two that do the faster on one real query is kept (measured here, on this
        model and CPU); ``"queries"`` keeps its int8 copy, with a warning if it disagrees."""
        candidates = query_copy_candidates(self.model, quantize, dtype)
        if not candidates:
            return
        texts = list(CALIBRATION_QUERIES)
        copies = {}
        with torch.inference_mode():
            reference = self._encode_batch(texts, Side.QUERY)
            for precision in candidates:
                copies[precision] = self.query_model = query_copy(self.model, precision)
                self.query_agreement[precision] = mean_cosine(reference, self._encode_batch(texts, Side.QUERY))
            self.query_model = None
            agreeing = {p: m for p, m in copies.items() if self.query_agreement[p] >= QUERY_COPY_MIN_AGREEMENT}
            if quantize == "queries":
                chosen: str | None = "int8"
            elif len(agreeing) > 1:
                chosen, self.query_seconds = fastest({p: self._query_timer(m, texts[0]) for p, m in agreeing.items()})
            else:
                chosen = next(iter(agreeing), None)
        agreement = ", ".join(f"{p} {cosine:.4f}" for p, cosine in self.query_agreement.items())
        if chosen is None:
            logger.info("%s: float32 queries: mean cosine to float32 only %s", self.model_id, agreement)
            return
        self.query_model = copies[chosen]
        if chosen not in agreeing:
            cosine = self.query_agreement[chosen]
            logger.warning("%s: %s queries agree at mean cosine %.4f only (< 0.99)", self.model_id, chosen, cosine)
        else:
            timing = ", ".join(f"{p} {seconds * 1000:.1f} ms" for p, seconds in self.query_seconds.items())
            logger.info("%s: %s queries (mean cosine to float32: %s%s)", self.model_id, chosen, agreement,
                        f"; one query: {timing}" if timing else "")  # fmt: skip

    def _query_timer(self, model: Any, query: str):
        def encode_one() -> None:
            self.query_model = model
            self._encode_batch([query], Side.QUERY)

        return encode_one

    @property
    def model_id(self) -> str:
        """The model's name without its folder or Hub organisation (what stores record)."""
        return self.model_name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]

    @abstractmethod
    def _token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        """Each text's length in tokens as the model will see it, and how many were cut."""

    @abstractmethod
    def _encode_batch(self, texts: list[str], side: Side) -> list[Vector]:
        """Encode one batch (texts of different lengths are right-padded by the library)."""

    def stream(self, texts: Iterable[str], side: Side) -> Iterator[Vector]:
        """Yield one vector per text, in input order, reading ``chunk_size`` texts at a time."""
        side = Side(side)
        for chunk in validated_chunks(texts, self.chunk_size):
            with self._model_lock:
                lengths, truncated = self._token_lengths(chunk, side)
                out: list[Vector | None] = [None] * len(chunk)
                for batch in length_sorted_batches(lengths, self.batch_size, self.max_batch_tokens, self.max_padding):
                    vectors = run_on_model_thread(self._encode_batch, [chunk[i] for i in batch], side)
                    self.stats.model_calls += 1
                    for index, vector in zip(batch, vectors, strict=True):
                        out[index] = vector
            self.stats.texts += len(chunk)
            self.stats.tokens += sum(lengths)
            self.stats.truncated += truncated
            if truncated:
                logger.warning("%d of %d %s texts were cut at the length limit", truncated, len(chunk), side.value)
            yield from out  # type: ignore[misc]

    # -- concurrent queries share model calls (see microbatch.py) --------------------------
    @property
    def query_batcher(self) -> MicroBatcher[Vector]:
        """The micro-batcher that ``encode_queries`` / ``aencode_queries`` go through."""
        batcher = self._query_batcher
        if batcher is None:
            with self._batcher_lock:
                if self._query_batcher is None:
                    self._query_batcher = self._new_batcher({})
                batcher = self._query_batcher
        return batcher

    def set_query_batching(self, **options: float) -> MicroBatcher[Vector]:
        """(Re)configure query coalescing: ``max_wait_s``, ``max_batch_texts``, ``max_batch_chars``,
        ``max_queue``, ``load_wait`` (see :class:`MicroBatcher`); the previous batcher finishes its queue first."""
        batcher = self._new_batcher(options)
        with self._batcher_lock:
            old, self._query_batcher = self._query_batcher, batcher
        if old is not None:
            old.close()
        return batcher

    def _new_batcher(self, options: dict[str, float]) -> MicroBatcher[Vector]:
        options.setdefault("max_batch_texts", self.batch_size)
        return MicroBatcher(
            lambda texts: list(self.stream(texts, Side.QUERY)),
            validate=self._validated,
            name=f"lfm-queries-{self.model_id}",
            **options,  # type: ignore[arg-type]
        )

    def _validated(self, texts: Iterable[str]) -> list[str]:
        return [text for chunk in validated_chunks(texts, self.chunk_size) for text in chunk]

    def _coalesced_queries(self, texts: Iterable[str]) -> list[Vector]:
        if threading.get_ident() == model_thread_id():  # the batcher would wait for this very thread
            return list(self.stream(texts, Side.QUERY))
        return self.query_batcher.encode(texts)

    async def _acoalesced_queries(self, texts: Iterable[str]) -> list[Vector]:
        if threading.get_ident() == model_thread_id():  # an event loop on the model thread: as above
            return list(self.stream(texts, Side.QUERY))
        return await self.query_batcher.aencode(texts)

    def stream_queries(self, texts: Iterable[str]) -> Iterator[Vector]:
        """Query-side vectors, one per text, lazily."""
        return self.stream(texts, Side.QUERY)

    def stream_documents(self, texts: Iterable[str]) -> Iterator[Vector]:
        """Document-side vectors, one per text, lazily."""
        return self.stream(texts, Side.DOCUMENT)


def stack(vectors: list[np.ndarray], dimension: int) -> np.ndarray:
    """Rows into one float32 matrix (an empty input gives shape (0, dimension))."""
    return np.stack(vectors).astype(np.float32, copy=False) if vectors else np.zeros((0, dimension), np.float32)


def in_float32(model: Any) -> bool:
    """Whether ``model`` computes in float32 (int8 models do: their int8 layers output float32)."""
    return next(model.parameters()).dtype == torch.float32


def unit_rows(array: np.ndarray) -> np.ndarray:
    """``array`` as float32 with each row rescaled to unit L2 norm (all-zero rows stay zero). Also what
    a bfloat16 model's vectors go through: its own normalisation leaves norms off by up to ~0.5 %."""
    array = np.asarray(array, dtype=np.float32)
    return array / np.maximum(np.linalg.norm(array, axis=-1, keepdims=True), 1e-12)

"""What the dense and the late-interaction encoder share: sides, streaming, batching, stats."""

from __future__ import annotations

import logging
import threading
from abc import ABC
from collections.abc import Iterable, Iterator
from typing import Any, Generic, TypeVar

import numpy as np

from lfm_retrieval.encoders.batching import EncodeStats, length_sorted_batches, validated_chunks
from lfm_retrieval.encoders.microbatch import MicroBatcher
from lfm_retrieval.runtimes.base import Runtime, Side, runtime_setting
from lfm_retrieval.runtimes.model_ids import model_id_of
from lfm_retrieval.runtimes.model_thread import model_thread_id, run_on_model_thread

logger = logging.getLogger("lfm_retrieval")
Vector = TypeVar("Vector")


class Encoder(ABC, Generic[Vector]):
    """Encodes texts on an explicit side, in bounded memory, in length-sorted batches, over a runtime
    (:mod:`lfm_retrieval.runtimes`) that runs the model on one batch.

    The runtime says how long each text is in tokens (after prompt/prefix and truncation), encodes
    one batch, and suggests the batch settings; ``max_padding`` is the fraction of a batch's tokens
    that may be padding (0 = equal-length batches). The runtime's own attributes named in
    ``runtime_attributes`` (the torch runtime's ``model``, ``query_model``, a dense runtime's
    ``prompts``, ...) read through the encoder.
    """

    runtime_attributes: tuple[str, ...] = ()

    def __init__(
        self,
        runtime: Runtime,
        batch_size: int | None,
        max_batch_tokens: int | None,
        chunk_size: int,
        max_padding: float | None = None,
    ) -> None:
        if any(value is not None and value < 1 for value in (batch_size, max_batch_tokens, chunk_size)):
            raise ValueError("batch_size, max_batch_tokens and chunk_size must be positive")
        if max_padding is not None and not 0.0 <= max_padding <= 1.0:
            raise ValueError(f"max_padding must be between 0 and 1, not {max_padding!r}")
        self.runtime = runtime
        self.model_name: str = runtime.model_name
        self.batch_size: int = batch_size or runtime_setting(runtime, "batch_size")
        self.max_batch_tokens: int = max_batch_tokens or runtime_setting(runtime, "max_batch_tokens")
        self.max_padding: float = runtime_setting(runtime, "max_padding") if max_padding is None else max_padding
        self.chunk_size = chunk_size
        self.stats = EncodeStats()
        # Fast tokenizers fail ("Already borrowed") when two threads use one at once, as
        # async framework calls do: one model call at a time per encoder.
        self._model_lock = threading.Lock()
        self._query_batcher: MicroBatcher[Vector] | None = None
        self._batcher_lock = threading.Lock()
        self._on_model_thread = bool(runtime_setting(runtime, "uses_model_thread"))

    def __getattr__(self, name: str) -> Any:
        # only reached when normal lookup fails: the runtime's attributes the encoder passes on
        if name in type(self).runtime_attributes and "runtime" in self.__dict__:
            return getattr(self.__dict__["runtime"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def dimension(self) -> int:
        """Width of each vector (of each token vector for ColBERT)."""
        return self.runtime.dimension  # type: ignore[attr-defined]

    @property
    def max_length(self) -> int:
        """Token limit of one text, prompt/prefix included."""
        return self.runtime.max_length

    @property
    def query_precision(self) -> str:
        """What queries run in: ``"int8"``, ``"bfloat16"`` (a torch query copy), the model's own
        precision, or what the runtime reports (``"remote"``, a GGUF file's type)."""
        return str(runtime_setting(self.runtime, "precision"))

    @property
    def model_id(self) -> str:
        """The model's name without its folder or Hub organisation (what stores record)."""
        return model_id_of(self.model_name)

    def _token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        """Each text's length in tokens as the model will see it, and how many were cut."""
        return self.runtime.token_lengths(texts, side)

    def _encode_batch(self, texts: list[str], side: Side) -> list[Vector]:
        """Encode one batch of raw texts (the runtime applies the side's prompt or prefix)."""
        return self.runtime.encode_batch(texts, side)  # type: ignore[return-value]

    def stream(self, texts: Iterable[str], side: Side) -> Iterator[Vector]:
        """Yield one vector per text, in input order, reading ``chunk_size`` texts at a time."""
        side = Side(side)
        for chunk in validated_chunks(texts, self.chunk_size):
            with self._model_lock:
                lengths, truncated = self._token_lengths(chunk, side)
                out: list[Vector | None] = [None] * len(chunk)
                for batch in length_sorted_batches(lengths, self.batch_size, self.max_batch_tokens, self.max_padding):
                    texts_in_batch = [chunk[i] for i in batch]
                    if self._on_model_thread:
                        vectors = run_on_model_thread(self._encode_batch, texts_in_batch, side)
                    else:
                        vectors = self._encode_batch(texts_in_batch, side)
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

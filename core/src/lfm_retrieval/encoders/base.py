"""What the dense and the late-interaction encoder share: sides, streaming, batching, stats."""

from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator
from typing import Generic, TypeVar

import numpy as np

from lfm_retrieval.encoders.batching import EncodeStats, Side, equal_length_batches, validated_chunks

logger = logging.getLogger("lfm_retrieval")
Vector = TypeVar("Vector")


class Encoder(ABC, Generic[Vector]):
    """Encodes texts on an explicit side, in bounded memory, in padding-free batches.

    Subclasses say how long each text is in tokens (after prompt/prefix and truncation)
    and how to encode one batch of texts that all have that length.
    """

    def __init__(self, batch_size: int, max_batch_tokens: int, chunk_size: int) -> None:
        if min(batch_size, max_batch_tokens, chunk_size) < 1:
            raise ValueError("batch_size, max_batch_tokens and chunk_size must be positive")
        self.batch_size = batch_size
        self.max_batch_tokens = max_batch_tokens
        self.chunk_size = chunk_size
        self.stats = EncodeStats()
        # Fast tokenizers fail ("Already borrowed") when two threads use one at once, as
        # async framework calls do: one model call at a time per encoder.
        self._model_lock = threading.Lock()

    model_name: str

    @property
    def model_id(self) -> str:
        """The model's name without its folder or Hub organisation (what stores record)."""
        return self.model_name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]

    @abstractmethod
    def _token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        """Each text's length in tokens as the model will see it, and how many were cut."""

    @abstractmethod
    def _encode_batch(self, texts: list[str], side: Side) -> list[Vector]:
        """Encode texts that all have the same token length."""

    def stream(self, texts: Iterable[str], side: Side) -> Iterator[Vector]:
        """Yield one vector per text, in input order, reading ``chunk_size`` texts at a time."""
        side = Side(side)
        for chunk in validated_chunks(texts, self.chunk_size):
            with self._model_lock:
                lengths, truncated = self._token_lengths(chunk, side)
                out: list[Vector | None] = [None] * len(chunk)
                for batch in equal_length_batches(lengths, self.batch_size, self.max_batch_tokens):
                    vectors = self._encode_batch([chunk[i] for i in batch], side)
                    for index, vector in zip(batch, vectors, strict=True):
                        out[index] = vector
            self.stats.texts += len(chunk)
            self.stats.tokens += sum(lengths)
            self.stats.truncated += truncated
            if truncated:
                logger.warning("%d of %d %s texts were cut at the length limit", truncated, len(chunk), side.value)
            yield from out  # type: ignore[misc]

    def stream_queries(self, texts: Iterable[str]) -> Iterator[Vector]:
        """Query-side vectors, one per text, lazily."""
        return self.stream(texts, Side.QUERY)

    def stream_documents(self, texts: Iterable[str]) -> Iterator[Vector]:
        """Document-side vectors, one per text, lazily."""
        return self.stream(texts, Side.DOCUMENT)


def stack(vectors: list[np.ndarray], dimension: int) -> np.ndarray:
    """Rows into one float32 matrix (an empty input gives shape (0, dimension))."""
    return np.stack(vectors).astype(np.float32, copy=False) if vectors else np.zeros((0, dimension), np.float32)

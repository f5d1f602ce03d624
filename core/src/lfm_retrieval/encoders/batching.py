"""Input validation, streaming chunks and length-sorted batches shared by the encoders."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import islice

from lfm_retrieval.errors import InvalidTextError, check_query


@dataclass
class EncodeStats:
    """Running totals of an encoder: texts encoded, tokens fed, texts cut at the length limit,
    forward passes run."""

    texts: int = 0
    tokens: int = 0
    truncated: int = 0
    model_calls: int = 0


def validated_chunks(texts: Iterable[str], chunk_size: int) -> Iterator[list[str]]:
    """Read ``texts`` lazily, ``chunk_size`` at a time, validating each one."""
    if isinstance(texts, str):
        raise InvalidTextError("texts is a single string; pass a list of strings (e.g. [text])")
    iterator = iter(texts)
    position = 0
    while chunk := list(islice(iterator, chunk_size)):
        yield [check_query(text, f"texts[{position + i}]") for i, text in enumerate(chunk)]
        position += len(chunk)


def length_sorted_batches(
    lengths: list[int], batch_size: int, max_batch_tokens: int, max_padding: float
) -> list[list[int]]:
    """Group indices into batches of similar token length, longest first.

    Texts are sorted by length and a batch grows while it holds at most ``batch_size``
    texts, at most ``max_batch_tokens`` tokens once padded to its longest text, and at
    most a ``max_padding`` fraction of pad tokens. ``max_padding=0`` gives batches of one
    length only (no padding at all), the only exact choice for a backbone whose pads are
    not inert.
    """
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    start = 0
    while start < len(order):
        longest = max(lengths[order[start]], 1)
        batch, real = [order[start]], lengths[order[start]]
        for index in order[start + 1 :]:
            size = len(batch) + 1
            padded = size * longest
            if size > batch_size or padded > max_batch_tokens or padded - real - lengths[index] > max_padding * padded:
                break
            batch.append(index)
            real += lengths[index]
        batches.append(batch)
        start += len(batch)
    return batches

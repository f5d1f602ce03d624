"""Input validation, streaming chunks and equal-length batches shared by the encoders."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from enum import Enum
from itertools import islice

from lfm_retrieval.errors import InvalidTextError


class Side(str, Enum):
    """Which side of retrieval a text is on; each side has its own prompt or prefix."""

    QUERY = "query"
    DOCUMENT = "document"


@dataclass
class EncodeStats:
    """Running totals of an encoder: texts encoded, tokens fed, texts cut at the length limit."""

    texts: int = 0
    tokens: int = 0
    truncated: int = 0


def check_text(text: object, position: int) -> str:
    """Return ``text`` if it is a non-blank string, else raise naming ``position``."""
    if text is None:
        raise InvalidTextError(f"texts[{position}] is None; expected a non-empty string")
    if not isinstance(text, str):
        raise InvalidTextError(f"texts[{position}] is {type(text).__name__}; expected a non-empty string")
    if not text.strip():
        raise InvalidTextError(f"texts[{position}] is empty or only whitespace; expected a non-empty string")
    return text


def validated_chunks(texts: Iterable[str], chunk_size: int) -> Iterator[list[str]]:
    """Read ``texts`` lazily, ``chunk_size`` at a time, validating each one."""
    if isinstance(texts, str):
        raise InvalidTextError("texts is a single string; pass a list of strings (e.g. [text])")
    iterator = iter(texts)
    position = 0
    while chunk := list(islice(iterator, chunk_size)):
        yield [check_text(text, position + i) for i, text in enumerate(chunk)]
        position += len(chunk)


def equal_length_batches(lengths: list[int], batch_size: int, max_batch_tokens: int) -> list[list[int]]:
    """Group indices so every batch holds texts of one token length.

    LFM2's centred convolution lets padding leak into the last real tokens, so a padded
    text's vector depends on its batch. Batches without padding give every text the
    vector it has alone, and waste no compute on pads. Longest lengths come first.
    """
    by_length: dict[int, list[int]] = defaultdict(list)
    for index, length in enumerate(lengths):
        by_length[length].append(index)
    batches = []
    for length in sorted(by_length, reverse=True):
        per_batch = max(1, min(batch_size, max_batch_tokens // max(length, 1)))
        indices = by_length[length]
        batches.extend(indices[i : i + per_batch] for i in range(0, len(indices), per_batch))
    return batches

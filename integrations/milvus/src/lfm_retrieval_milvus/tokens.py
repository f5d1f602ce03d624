"""A record's token vectors as pages of text in one ``ARRAY<VARCHAR>`` field.

No Milvus engine that runs here (the 2.3 server, Milvus Lite 2.5 and 3.x) has the 2.6.4+
Array-of-Structs embedding lists, and a 2.3 server has no bytes field: a VARCHAR holds at
most 65,535 bytes and an ARRAY of floats at most 4,096 of them (32 tokens of 128-d). So the
matrix's raw little-endian bytes (float32, or float16 in a float16 collection) are base64
text (VARCHAR must be valid UTF-8) cut into pages of at most ``PAGE_CHARS``.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence

import numpy as np

#: Raw bytes per page: base64 makes 4 characters of each 3 bytes, under Milvus' 65,535 per VARCHAR.
PAGE_BYTES = 49_149
PAGE_CHARS = PAGE_BYTES // 3 * 4
#: Pages per record (the ARRAY field's capacity): 3.1 MB, e.g. 12,287 float16 tokens of 128-d.
MAX_PAGES = 64
DTYPES = {"float32": np.dtype("<f4"), "float16": np.dtype("<f2")}


def max_tokens(dimension: int, vector_type: str) -> int:
    """How many token vectors one record can hold."""
    return MAX_PAGES * PAGE_BYTES // (dimension * DTYPES[vector_type].itemsize)


def to_pages(tokens: np.ndarray, vector_type: str) -> list[str]:
    """``tokens`` (tokens, dim) as base64 pages; the caller checked ``len(tokens) <= max_tokens``."""
    raw = np.ascontiguousarray(tokens, dtype=DTYPES[vector_type]).tobytes()
    return [
        base64.b64encode(raw[start : start + PAGE_BYTES]).decode("ascii") for start in range(0, len(raw), PAGE_BYTES)
    ]


def from_pages(pages: Sequence[str], dimension: int, vector_type: str) -> np.ndarray:
    """The float32 (tokens, dim) matrix that ``to_pages`` wrote."""
    raw = b"".join(base64.b64decode(page) for page in pages)
    return np.frombuffer(raw, dtype=DTYPES[vector_type]).astype(np.float32).reshape(-1, dimension)

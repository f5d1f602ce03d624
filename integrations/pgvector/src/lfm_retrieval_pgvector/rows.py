"""Rows for COPY ... FORMAT BINARY: typed, and checked for what PostgreSQL alone refuses, before a batch is sent.

The core's ``validate_records`` has already checked shapes, strict JSON, the float16 range
and kept the last record of a repeated key."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

try:  # pgvector-python >= 0.4 exports it at the top; 0.5 dropped the 0.3.x home in pgvector.psycopg
    from pgvector import HalfVector
except ImportError:  # pgvector-python 0.3.x
    from pgvector.psycopg import HalfVector

from lfm_retrieval.errors import InvalidRecordError
from lfm_retrieval.muvera import Muvera
from lfm_retrieval.stores.records import AnySpec, HybridSpec, Record
from lfm_retrieval.vectors import unit_rows
from lfm_retrieval_pgvector.layout import columns_of


def verbatim(data: bytes) -> bytes:
    """A ``dumps`` for payloads already serialised (and checked) by :func:`payload_json`."""
    return data


def exact_number(value: Any) -> Any:
    """``value``, or the integer a float from 2**53 on is (its JSON text from 1e16 on is a rounded decimal)."""
    if isinstance(value, float) and abs(value) >= 2**53 and value.is_integer():
        return int(value)
    return value


def _exact_numbers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _exact_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_exact_numbers(v) for v in value]
    return exact_number(value)


def payload_json(key: str, payload: dict[str, Any]) -> bytes:
    """A checked payload as compact JSON text; InvalidRecordError for a NUL, which JSONB cannot hold.

    A float from 1e16 on is written as the integer it equals: JSON writes it as its shortest
    decimal (``2.0**60`` as ``1.152921504606847e+18``), which JSONB would keep as another number.
    """
    text = json.dumps(payload, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    if "e+" in text:  # such a float (or a string holding "e+"): write the exact integers
        text = json.dumps(_exact_numbers(payload), allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        raise InvalidRecordError(f"record {key!r}: payload contains a NUL character; nothing written")
    return text.encode()


def _text(key: str, value: str, what: str) -> str:
    if "\x00" in value:
        raise InvalidRecordError(f"record {key!r}: {what} contains a NUL character; nothing written")
    return value


def token_bytes(tokens: np.ndarray, vector_type: str) -> bytes:
    """A record's token vectors as stored in the ``tokens`` column: little-endian rows, float16 or float32."""
    return np.ascontiguousarray(tokens, dtype="<f2" if vector_type == "float16" else "<f4").tobytes()


def tokens_from_bytes(data: bytes, dimension: int, vector_type: str) -> np.ndarray:
    """The ``(tokens, dimension)`` float32 matrix a ``tokens`` value holds."""
    values = np.frombuffer(data, dtype="<f2" if vector_type == "float16" else "<f4")
    return values.reshape(-1, dimension).astype(np.float32)


def _vector_rows(vectors: list[np.ndarray], vector_type: str) -> list[np.ndarray | HalfVector]:
    """Dense vectors in their wire form (big-endian, cast once for the batch)."""
    matrix = np.stack(vectors).astype(">f2" if vector_type == "float16" else ">f4")
    # pgvector-python >= 0.5 dumps only HalfVector objects as halfvec (no bare arrays)
    return [HalfVector(v) for v in matrix] if vector_type == "float16" else list(matrix)


def prepare_rows(
    rows: Sequence[tuple[str, Any, Record]], spec: AnySpec, muvera: Muvera | None = None
) -> list[tuple[Any, ...]]:
    """COPY rows (in :func:`~lfm_retrieval_pgvector.layout.columns_of` order) for a batch from ``validate_records``.

    Raises InvalidRecordError, naming the record, for what PostgreSQL would refuse mid-batch:
    a NUL in a key, fingerprint or payload. A multivector batch is MUVERA-encoded here (``muvera``).
    """
    if not rows:
        return []
    heads = []
    for record_id, _, record in rows:
        key = _text(record.key, record.key, "key")
        fingerprint = _text(key, record.fingerprint, "fingerprint")
        heads.append((uuid.UUID(record_id), key, Jsonb(payload_json(key, record.payload), verbatim), fingerprint))
    if isinstance(spec, HybridSpec):
        dense = _vector_rows([vectors[0] for _, vectors, _ in rows], spec.dense.vector_type)
        tokens = [token_bytes(vectors[1], spec.multivector.vector_type) for _, vectors, _ in rows]
        return [(i, k, d, t, m, f) for (i, k, m, f), d, t in zip(heads, dense, tokens, strict=True)]
    if spec.kind == "multivector":
        if muvera is None:
            raise ValueError("a multivector batch needs its collection's MUVERA encoder")
        matrices = [vectors for _, vectors, _ in rows]
        first_stage = muvera.encode_documents([unit_rows(t) if spec.distance == "cosine" else t for t in matrices])
        encodings = _vector_rows(list(first_stage), "float16")
        tokens = [token_bytes(t, spec.vector_type) for t in matrices]
        return [(i, k, e, t, m, f) for (i, k, m, f), e, t in zip(heads, encodings, tokens, strict=True)]
    dense = _vector_rows([vectors for _, vectors, _ in rows], spec.vector_type)
    return [(i, k, d, m, f) for (i, k, m, f), d in zip(heads, dense, strict=True)]


def copy_types(spec: AnySpec) -> list[str]:
    """The binary COPY type of each column of ``spec``'s table."""
    dense = spec.dense if isinstance(spec, HybridSpec) else spec
    types = {
        "id": "uuid",
        "key": "text",
        "embedding": "halfvec" if dense.vector_type == "float16" else "vector",
        "muvera": "halfvec",
        "tokens": "bytea",
        "metadata": "jsonb",
        "fingerprint": "text",
    }
    return [types[name] for name in columns_of(spec)]


def copy_rows(cursor: psycopg.Cursor, table: sql.Composable, rows: Sequence[tuple[Any, ...]], spec: AnySpec) -> None:
    """Stream ``rows`` into ``table`` with COPY ... FROM STDIN (FORMAT BINARY)."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, columns_of(spec)))
    )
    with cursor.copy(statement) as copy:
        copy.set_types(copy_types(spec))
        for row in rows:
            copy.write_row(row)

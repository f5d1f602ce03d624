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
from lfm_retrieval.stores.records import Record

#: Column order of every COPY and of the table.
COLUMNS = ("id", "key", "embedding", "metadata", "fingerprint")
Row = tuple[uuid.UUID, str, np.ndarray | HalfVector, Jsonb, str]


def verbatim(data: bytes) -> bytes:
    """A ``dumps`` for payloads already serialised (and checked) by :func:`payload_json`."""
    return data


def payload_json(key: str, payload: dict[str, Any]) -> bytes:
    """A checked payload as compact JSON text; InvalidRecordError for a NUL, which JSONB cannot hold."""
    text = json.dumps(payload, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    if "\\u0000" in text:
        raise InvalidRecordError(f"record {key!r}: payload contains a NUL character; nothing written")
    return text.encode()


def _text(key: str, value: str, what: str) -> str:
    if "\x00" in value:
        raise InvalidRecordError(f"record {key!r}: {what} contains a NUL character; nothing written")
    return value


def prepare_rows(rows: Sequence[tuple[str, np.ndarray, Record]], vector_type: str) -> list[Row]:
    """COPY rows for a batch from ``validate_records``.

    Raises InvalidRecordError, naming the record, for what PostgreSQL would refuse mid-batch:
    a NUL in a key, fingerprint or payload.
    """
    if not rows:
        return []
    matrix = np.stack([vector for _, vector, _ in rows])
    # halfvec's / vector's wire form: no copy per row later
    matrix = matrix.astype(">f2" if vector_type == "float16" else ">f4")
    prepared: list[Row] = []
    for (record_id, _, record), vector in zip(rows, matrix, strict=True):
        key = _text(record.key, record.key, "key")
        fingerprint = _text(key, record.fingerprint, "fingerprint")
        metadata = Jsonb(payload_json(key, record.payload), verbatim)
        # pgvector-python >= 0.5 dumps only HalfVector objects as halfvec (no bare arrays)
        embedding = HalfVector(vector) if vector_type == "float16" else vector
        prepared.append((uuid.UUID(record_id), key, embedding, metadata, fingerprint))
    return prepared


def copy_rows(cursor: psycopg.Cursor, table: sql.Composable, rows: Sequence[Row], vector_type: str) -> None:
    """Stream ``rows`` into ``table`` with COPY ... FROM STDIN (FORMAT BINARY)."""
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        table, sql.SQL(", ").join(map(sql.Identifier, COLUMNS))
    )
    with cursor.copy(statement) as copy:
        copy.set_types(["uuid", "text", "halfvec" if vector_type == "float16" else "vector", "jsonb", "text"])
        for row in rows:
            copy.write_row(row)

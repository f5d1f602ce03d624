"""Rows for COPY ... FORMAT BINARY: checked, deduplicated and typed before a batch is sent."""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb

from lfm_retrieval.errors import InvalidRecordError
from lfm_retrieval.stores.records import Record

#: Column order of every COPY and of the table.
COLUMNS = ("id", "key", "embedding", "metadata", "fingerprint")
#: Largest finite float16 value: a halfvec cannot hold more.
HALF_MAX = 65504.0

Row = tuple[uuid.UUID, str, np.ndarray, Jsonb, str]


def verbatim(data: bytes) -> bytes:
    """A ``dumps`` for payloads already serialised (and checked) by :func:`payload_json`."""
    return data


def payload_json(key: str, payload: dict[str, Any]) -> bytes:
    """A payload as strict JSON (no NaN/Infinity, no NUL), or InvalidRecordError naming the record."""
    try:
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise InvalidRecordError(f"record {key!r}: payload is not JSON ({exc}); nothing written") from exc
    if "\\u0000" in text:
        raise InvalidRecordError(f"record {key!r}: payload contains a NUL character; nothing written")
    return text.encode()


def _text(key: str, value: Any, what: str) -> str:
    if not isinstance(value, str):
        kind = type(value).__name__
        raise InvalidRecordError(f"record {key!r}: {what} must be a string, not {kind}; nothing written")
    if "\x00" in value:
        raise InvalidRecordError(f"record {key!r}: {what} contains a NUL character; nothing written")
    return value


def prepare_rows(rows: Sequence[tuple[str, np.ndarray, Record]], vector_type: str) -> list[Row]:
    """COPY rows for a validated batch; a key given twice keeps its last record (as repeated upserts would).

    Raises InvalidRecordError, naming the record, for what PostgreSQL would refuse mid-batch:
    a payload that is not strict JSON, a NUL in a key or fingerprint, a value too large for halfvec.
    """
    last: dict[str, int] = {record_id: position for position, (record_id, _, _) in enumerate(rows)}
    kept = [rows[position] for position in sorted(last.values())]
    if not kept:
        return []
    matrix = np.stack([vector for _, vector, _ in kept])
    if vector_type == "float16":
        too_big = np.abs(matrix).max(axis=1) > HALF_MAX
        if too_big.any():
            key = kept[int(np.argmax(too_big))][2].key
            raise InvalidRecordError(
                f"record {key!r}: vector has values beyond float16's range (±{HALF_MAX:g}) for halfvec; nothing written"
            )
        matrix = matrix.astype(">f2")  # HalfVector's wire form: no copy per row later
    else:
        matrix = matrix.astype(">f4")  # Vector's wire form
    prepared: list[Row] = []
    for (record_id, _, record), vector in zip(kept, matrix, strict=True):
        key = _text(record.key, record.key, "key")
        fingerprint = _text(key, record.fingerprint, "fingerprint")
        metadata = Jsonb(payload_json(key, record.payload), verbatim)
        prepared.append((uuid.UUID(record_id), key, vector, metadata, fingerprint))
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

"""Records as Milvus rows, checked against what Milvus can store before anything is sent."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np

from lfm_retrieval.errors import InvalidRecordError
from lfm_retrieval.stores.records import Record
from lfm_retrieval_milvus.expressions import INT64_MAX, INT64_MIN
from lfm_retrieval_milvus.schema import FINGERPRINT, ID, KEY, MAX_JSON_BYTES, MAX_VARCHAR_BYTES, METADATA, VECTOR


class _NotJSON(ValueError):
    """A payload value Milvus' JSON field cannot hold unchanged."""


def _json_value(value: Any, path: str) -> Any:
    """``value`` as plain JSON data (numpy scalars and arrays unwrapped), or _NotJSON saying why."""
    if isinstance(value, (np.generic, np.ndarray)):
        value = value.tolist()
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, int):
        if INT64_MIN <= value <= INT64_MAX:
            return value
        raise _NotJSON(f"{path} = {value} is outside the 64-bit integer range")
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        raise _NotJSON(f"{path} = {value} is not a finite number")
    if isinstance(value, (list, tuple)):
        return [_json_value(item, f"{path}[{i}]") for i, item in enumerate(value)]
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise _NotJSON(f"{path} has a key {key!r} that is not a string")
        return {key: _json_value(item, f"{path}[{key!r}]") for key, item in value.items()}
    raise _NotJSON(f"{path} is a {type(value).__name__}, not a JSON value")


def encode_metadata(record: Record) -> str:
    """The record's payload as the compact JSON Milvus stores, or InvalidRecordError naming it."""
    try:
        text = json.dumps(_json_value(record.payload, "payload"), ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
    except _NotJSON as error:
        problem = str(error)
    except UnicodeEncodeError as error:
        problem = f"payload is not valid text ({error})"
    else:
        if size <= MAX_JSON_BYTES:
            return text
        problem = f"payload is {size} bytes of JSON; Milvus stores at most {MAX_JSON_BYTES}"
    raise InvalidRecordError(f"record {record.key!r}: {problem}; nothing written")


def _varchar(record: Record, what: str, value: str) -> str:
    try:
        size = len(value.encode("utf-8"))
    except UnicodeEncodeError as error:
        raise InvalidRecordError(
            f"record {record.key!r}: {what} is not valid text ({error}); nothing written"
        ) from None
    if size > MAX_VARCHAR_BYTES:
        raise InvalidRecordError(
            f"record {record.key!r}: {what} is {size} bytes; Milvus stores at most {MAX_VARCHAR_BYTES}; nothing written"
        )
    return value


def to_rows(rows: list[tuple[str, np.ndarray, Record]], vector_type: str) -> list[dict[str, Any]]:
    """Milvus rows for validated (id, vector, record) triples, the last of each id winning.

    Milvus 2.3 keeps both rows when one upsert request repeats an id, so repeats are
    dropped here. Raises InvalidRecordError (naming the record) before anything is sent.
    """
    dtype = np.float16 if vector_type == "float16" else np.float32
    by_id: dict[str, dict[str, Any]] = {}
    for record_id, vector, record in rows:
        if not isinstance(record.fingerprint, str):
            raise InvalidRecordError(f"record {record.key!r}: fingerprint must be a string; nothing written")
        if dtype is np.float16 and not np.isfinite(vector.astype(np.float16)).all():
            raise InvalidRecordError(f"record {record.key!r}: vector overflows float16; nothing written")
        by_id.pop(record_id, None)  # keep the order of last occurrences
        by_id[record_id] = {
            ID: record_id,
            KEY: _varchar(record, "key", record.key),
            FINGERPRINT: _varchar(record, "fingerprint", record.fingerprint),
            VECTOR: vector.astype(dtype, copy=False),
            METADATA: encode_metadata(record),
        }
    return list(by_id.values())

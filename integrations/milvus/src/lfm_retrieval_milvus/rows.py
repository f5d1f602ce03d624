"""Records as Milvus rows, checked against what Milvus can store before anything is sent."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from lfm_retrieval.errors import InvalidRecordError
from lfm_retrieval.stores.records import AnySpec, HybridSpec, Record
from lfm_retrieval_milvus.filters import INT64_MAX, INT64_MIN
from lfm_retrieval_milvus.layout import (
    FINGERPRINT,
    ID,
    KEY,
    MAX_JSON_BYTES,
    MAX_VARCHAR_BYTES,
    METADATA,
    TOKENS,
    VECTOR,
)
from lfm_retrieval_milvus.tokens import max_tokens, to_pages


def _outside_int64(value: Any, path: str) -> str | None:
    """Where a (strict JSON) payload holds an integer Milvus' JSON field cannot keep, if anywhere."""
    if isinstance(value, int) and not isinstance(value, bool) and not INT64_MIN <= value <= INT64_MAX:
        return f"{path} = {value} is outside the 64-bit integer range"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, (list, tuple)) else ()
    for name, item in items:
        if problem := _outside_int64(item, f"{path}[{name!r}]"):
            return problem
    return None


def encode_metadata(record: Record) -> str:
    """The record's (strict JSON) payload as the compact JSON Milvus stores, or InvalidRecordError
    naming it for Milvus' own limits: 64-bit integers, valid UTF-8, MAX_JSON_BYTES."""
    try:
        text = json.dumps(record.payload, ensure_ascii=False, separators=(",", ":"))
        size = len(text.encode("utf-8"))
        problem = _outside_int64(record.payload, "payload")
    except UnicodeEncodeError as error:
        problem = f"payload is not valid text ({error})"
    else:
        if problem is None and size <= MAX_JSON_BYTES:
            return text
        problem = problem or f"payload is {size} bytes of JSON; Milvus stores at most {MAX_JSON_BYTES}"
    raise InvalidRecordError(f"record {record.key!r}: {problem}; nothing written")


def varchar(record: Record, what: str, value: str) -> str:
    """``value`` if Milvus can store it in a VARCHAR, else InvalidRecordError naming the record."""
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
    """Milvus rows for a batch from ``validate_records`` (ids unique: Milvus 2.3 would keep both rows
    of an id repeated in one request). Raises InvalidRecordError (naming the record) before anything is sent.
    """
    dtype = np.float16 if vector_type == "float16" else np.float32
    return [
        {
            ID: record_id,
            KEY: varchar(record, "key", record.key),
            FINGERPRINT: varchar(record, "fingerprint", record.fingerprint),
            VECTOR: vector.astype(dtype, copy=False),
            METADATA: encode_metadata(record),
        }
        for record_id, vector, record in rows
    ]


def to_token_rows(
    rows: list[tuple[str, Any, Record]], spec: AnySpec, indexed: list[np.ndarray]
) -> list[dict[str, Any]]:
    """Milvus rows of a multivector or hybrid collection: ``indexed`` holds each row's indexed vector
    (its MUVERA encoding, or its dense vector); the token vectors become pages. Raises
    InvalidRecordError (naming the record) before anything is sent."""
    tokens_spec = spec.multivector if isinstance(spec, HybridSpec) else spec
    vector_type = spec.dense.vector_type if isinstance(spec, HybridSpec) else "float32"
    limit = max_tokens(tokens_spec.dimension, tokens_spec.vector_type)
    milvus_rows = []
    for (record_id, vectors, record), vector in zip(rows, indexed, strict=True):
        tokens = vectors[1] if isinstance(spec, HybridSpec) else vectors
        if len(tokens) > limit:
            raise InvalidRecordError(
                f"record {record.key!r}: {len(tokens)} token vectors; a Milvus record holds at most {limit} "
                f"of {tokens_spec.dimension}-d {tokens_spec.vector_type}; nothing written"
            )
        milvus_rows.append(
            {
                ID: record_id,
                KEY: varchar(record, "key", record.key),
                FINGERPRINT: varchar(record, "fingerprint", record.fingerprint),
                VECTOR: vector.astype(np.float16 if vector_type == "float16" else np.float32, copy=False),
                TOKENS: to_pages(tokens, tokens_spec.vector_type),
                METADATA: encode_metadata(record),
            }
        )
    return milvus_rows

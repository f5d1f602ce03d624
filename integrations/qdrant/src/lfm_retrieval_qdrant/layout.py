"""How a record is laid out in a Qdrant point, and a CollectionSpec in a collection.

Point payload::

    {"_lfm_key": "<caller's key>", "_lfm_fingerprint": "<Record.fingerprint>",
     "_lfm_payload": {<the caller's payload, untouched>}}

The caller's payload is nested under one field, so no user field can ever collide
with the store's own (a user payload may itself hold ``_lfm_key``). Filters and
payload indexes address user fields as ``_lfm_payload."<field>"``.

Collection metadata (Qdrant's collection ``metadata``, kept by the server since 1.16
and by local mode in its ``meta.json``)::

    {"lfm_retrieval": {"dimension": 1024, "distance": "cosine", "vector_type": "float32",
                       "model": "LiquidAI/LFM2.5-Embedding-350M", "layout": 1}}
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from qdrant_client import models

from lfm_retrieval.stores import CollectionSpec, Hit

KEY_FIELD = "_lfm_key"
FINGERPRINT_FIELD = "_lfm_fingerprint"
PAYLOAD_FIELD = "_lfm_payload"
METADATA_KEY = "lfm_retrieval"
LAYOUT_VERSION = 1

DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
_DISTANCE_NAMES = {value: name for name, value in DISTANCES.items()}


def field_path(field: str) -> str:
    """The Qdrant JSON path of a user payload field (quoted, so any name but one with ``"`` works)."""
    if '"' in field:
        from lfm_retrieval.errors import InvalidFilterError

        raise InvalidFilterError(f"field {field!r}: Qdrant cannot address a payload field whose name contains '\"'")
    return f'{PAYLOAD_FIELD}."{field}"'


# -- points -------------------------------------------------------------------------------


def point_payload(key: str, payload: Mapping[str, Any], fingerprint: str = "") -> dict[str, Any]:
    """The stored payload of a record."""
    return {KEY_FIELD: key, FINGERPRINT_FIELD: fingerprint, PAYLOAD_FIELD: dict(payload)}


def stored_vectors(vectors: list[np.ndarray], spec: CollectionSpec) -> list[list[float]]:
    """Vectors as sent: float16 collections get float16 values in every mode.

    A server stores float16 itself; rounding here makes local mode (which keeps
    float32) hold and score the same values.
    """
    matrix = np.stack(vectors)
    if spec.vector_type == "float16":
        matrix = matrix.astype(np.float16).astype(np.float32)
    return matrix.tolist()


def to_hit(point: models.ScoredPoint, spec: CollectionSpec) -> Hit:
    """A search result as the protocol's Hit: the caller's key and payload, higher score better."""
    stored = point.payload or {}
    point_id = str(point.id)
    if KEY_FIELD in stored:
        key, payload = stored[KEY_FIELD], dict(stored.get(PAYLOAD_FIELD) or {})
    else:  # a point written by another tool: show what is there
        key, payload = point_id, dict(stored)
    score = -point.score if spec.distance == "euclid" else point.score  # Qdrant returns the distance
    return Hit(point_id, key, float(score), payload)


# -- collections --------------------------------------------------------------------------


def vector_params(spec: CollectionSpec) -> models.VectorParams:
    """The collection's (single, unnamed) vector for ``spec``."""
    datatype = models.Datatype.FLOAT16 if spec.vector_type == "float16" else None
    return models.VectorParams(size=spec.dimension, distance=DISTANCES[spec.distance], datatype=datatype)


def collection_metadata(spec: CollectionSpec) -> dict[str, Any]:
    """The metadata recorded with the collection when it is created."""
    return {METADATA_KEY: {**spec.as_metadata(), "layout": LAYOUT_VERSION}}


def spec_of(config: models.CollectionConfig) -> dict[str, Any]:
    """The spec an existing collection holds (``CollectionSpec.as_metadata()`` form).

    Size, distance and datatype come from the collection's actual vector config; the
    model from the recorded metadata (None when the collection was not made by this
    package, which then matches no spec that names a model).
    """
    recorded = (config.metadata or {}).get(METADATA_KEY) or {}
    vectors = config.params.vectors
    if not isinstance(vectors, models.VectorParams):  # named vectors or none: not a collection of ours
        names = sorted(vectors) if isinstance(vectors, Mapping) else []
        return {"dimension": None, "distance": f"named vectors {names}", "vector_type": None, "model": None}
    datatype = vectors.datatype
    vector_type = (
        "float32" if datatype in (None, models.Datatype.FLOAT32) else str(getattr(datatype, "value", datatype))
    )
    distance = _DISTANCE_NAMES.get(vectors.distance, str(getattr(vectors.distance, "value", vectors.distance)))
    return {
        "dimension": vectors.size,
        "distance": distance,
        "vector_type": vector_type,
        "model": recorded.get("model"),
    }

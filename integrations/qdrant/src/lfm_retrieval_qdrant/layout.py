"""How a record is laid out in a Qdrant point, and a CollectionSpec in a collection.

Point payload::

    {"_lfm_key": "<caller's key>", "_lfm_fingerprint": "<Record.fingerprint>",
     "_lfm_payload": {<the caller's payload, untouched>}}

The caller's payload is nested under one field, so no user field can ever collide
with the store's own (a user payload may itself hold ``_lfm_key``). Filters and
payload indexes address user fields as ``_lfm_payload."<field>"``.

Collection metadata (Qdrant's collection ``metadata``, kept by the server since 1.16
and by local mode in its ``meta.json``): the spec's ``as_metadata()`` plus the layout::

    {"lfm_retrieval": {"kind": "dense", "dimension": 1024, "distance": "cosine",
                       "vector_type": "float32", "model": "LiquidAI/LFM2.5-Embedding-350M",
                       "layout": 1}}

Vectors: a dense collection has one unnamed vector; a multivector collection one unnamed
multivector (``MultiVectorConfig(MAX_SIM)``, HNSW off: ``m=0``), or, with a MUVERA first
stage (:mod:`lfm_retrieval_qdrant.first_stage`), the named vectors ``"colbert"`` (that
multivector) and ``"muvera"`` (dot product, HNSW); a hybrid collection the named vectors
``"dense"`` (HNSW) and ``"colbert"`` (the multivector, ``m=0``). The kind is read back from
the vector config itself, never from the metadata alone.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from qdrant_client import models

from lfm_retrieval.errors import InvalidFilterError
from lfm_retrieval.stores import AnySpec, CollectionSpec, Hit, HybridSpec, Record

KEY_FIELD = "_lfm_key"
FINGERPRINT_FIELD = "_lfm_fingerprint"
PAYLOAD_FIELD = "_lfm_payload"
METADATA_KEY = "lfm_retrieval"
LAYOUT_VERSION = 1
#: The named vectors of a hybrid collection.
DENSE_VECTOR = "dense"
COLBERT_VECTOR = "colbert"
#: The named dense vector of a multivector collection's MUVERA first stage.
MUVERA_VECTOR = "muvera"

DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
_DISTANCE_NAMES = {value: name for name, value in DISTANCES.items()}


def field_path(field: str) -> str:
    """The Qdrant JSON path of a user payload field (quoted, so any name but one with ``"`` works)."""
    if '"' in field:
        raise InvalidFilterError(f"field {field!r}: Qdrant cannot address a payload field whose name contains '\"'")
    return f'{PAYLOAD_FIELD}."{field}"'


# -- points -------------------------------------------------------------------------------


def point_payload(key: str, payload: Mapping[str, Any], fingerprint: str = "") -> dict[str, Any]:
    """The stored payload of a record."""
    return {KEY_FIELD: key, FINGERPRINT_FIELD: fingerprint, PAYLOAD_FIELD: dict(payload)}


def _as_stored(matrix: np.ndarray, spec: CollectionSpec) -> np.ndarray:
    if spec.vector_type == "float16":
        return matrix.astype(np.float16).astype(np.float32)
    return matrix


def stored_vectors(vectors: list[np.ndarray], spec: CollectionSpec) -> list[list[float]]:
    """Dense vectors as sent: float16 collections get float16 values in every mode.

    A server stores float16 itself; rounding here makes local mode (which keeps
    float32) hold and score the same values.
    """
    return _as_stored(np.stack(vectors), spec).tolist()


def query_values(query: np.ndarray, spec: CollectionSpec) -> list[float] | list[list[float]]:
    """A query vector or token matrix as sent: float16-rounded for a float16 vector.

    Qdrant's engine scores a float16 vector against the query rounded to float16;
    rounding here makes local mode score as a server does (a server's own rounding of
    the rounded values changes nothing).
    """
    return _as_stored(query, spec).tolist()


def stored_tokens(matrices: list[np.ndarray], spec: CollectionSpec) -> list[list[list[float]]]:
    """Token matrices as sent, one per point (float16-rounded as :func:`stored_vectors`)."""
    return [_as_stored(matrix, spec).tolist() for matrix in matrices]


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


def point_fingerprint(point: Any) -> tuple[str, str]:
    """(key, fingerprint) of a point read back (qdrant-client's or qdrant-edge's: both have ``id`` and ``payload``)."""
    stored = point.payload or {}
    return str(stored.get(KEY_FIELD, point.id)), str(stored.get(FINGERPRINT_FIELD, ""))


def point_record(spec: AnySpec, point: Any) -> Record:
    """A point read back with its vectors as the Record that wrote it: one vector, a token matrix, or both (hybrid)."""
    key, fingerprint = point_fingerprint(point)
    payload, vectors = dict((point.payload or {}).get(PAYLOAD_FIELD) or {}), point.vector
    if isinstance(spec, HybridSpec):
        dense, tokens = vectors[DENSE_VECTOR], vectors[COLBERT_VECTOR]
        return Record(key, _float32(dense), payload, fingerprint, token_vectors=_float32(tokens))
    if spec.kind == "multivector":
        tokens = vectors[COLBERT_VECTOR] if isinstance(vectors, Mapping) else vectors  # named with a first stage
        return Record(key, payload=payload, fingerprint=fingerprint, token_vectors=_float32(tokens))
    return Record(key, _float32(vectors), payload, fingerprint)


def _float32(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=np.float32)


# -- collections --------------------------------------------------------------------------


def vector_params(spec: CollectionSpec) -> models.VectorParams:
    """The Qdrant vector for ``spec``: dense (HNSW), or a MaxSim multivector with HNSW off (``m=0``).

    A multivector's candidates come from a scan or a dense prefetch; an HNSW graph over
    every token would cost much and serve nothing.
    """
    datatype = models.Datatype.FLOAT16 if spec.vector_type == "float16" else None
    if spec.kind == "multivector":
        return models.VectorParams(
            size=spec.dimension,
            distance=DISTANCES[spec.distance],
            datatype=datatype,
            multivector_config=models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM),
            hnsw_config=models.HnswConfigDiff(m=0),
        )
    return models.VectorParams(size=spec.dimension, distance=DISTANCES[spec.distance], datatype=datatype)


def vectors_config(
    spec: AnySpec, first_stage: CollectionSpec | None = None
) -> models.VectorParams | dict[str, models.VectorParams]:
    """The collection's vectors: one unnamed vector, ``"dense"`` + ``"colbert"`` for a hybrid spec,
    or ``"colbert"`` + ``"muvera"`` for a multivector spec with a first stage (``first_stage``:
    the spec of its MUVERA vector)."""
    if isinstance(spec, HybridSpec):
        return {DENSE_VECTOR: vector_params(spec.dense), COLBERT_VECTOR: vector_params(spec.multivector)}
    if first_stage is not None:
        return {COLBERT_VECTOR: vector_params(spec), MUVERA_VECTOR: vector_params(first_stage)}
    return vector_params(spec)


def collection_metadata(spec: AnySpec, first_stage: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata recorded with the collection when it is created (with its first stage, if any)."""
    recorded = {**spec.as_metadata(), "layout": LAYOUT_VERSION}
    if first_stage is not None:
        recorded["first_stage"] = dict(first_stage)
    return {METADATA_KEY: recorded}


def _params_spec(params: models.VectorParams, recorded: Mapping[str, Any]) -> dict[str, Any]:
    datatype = params.datatype
    vector_type = (
        "float32" if datatype in (None, models.Datatype.FLOAT32) else str(getattr(datatype, "value", datatype))
    )
    distance = _DISTANCE_NAMES.get(params.distance, str(getattr(params.distance, "value", params.distance)))
    return {
        "kind": "dense" if params.multivector_config is None else "multivector",
        "dimension": params.size,
        "distance": distance,
        "vector_type": vector_type,
        "model": recorded.get("model"),
    }


def spec_of(config: models.CollectionConfig) -> dict[str, Any]:
    """The spec an existing collection holds (``as_metadata()`` form of its kind).

    Kind, size, distance and datatype come from the collection's actual vector config
    (an unnamed vector with a multivector config, or the named vectors ``"colbert"`` +
    ``"muvera"``, is a multivector collection; ``"dense"`` + ``"colbert"`` a hybrid one); the
    model from the recorded metadata
    (None when the collection was not made by this package, which then matches no spec
    that names a model).
    """
    recorded = (config.metadata or {}).get(METADATA_KEY) or {}
    vectors = config.params.vectors
    if isinstance(vectors, models.VectorParams):
        return _params_spec(vectors, recorded)
    names = sorted(vectors) if isinstance(vectors, Mapping) else []
    if names == sorted((COLBERT_VECTOR, MUVERA_VECTOR)):  # a multivector collection with a first stage
        assert isinstance(vectors, Mapping)
        return _params_spec(vectors[COLBERT_VECTOR], recorded)
    if names == sorted((DENSE_VECTOR, COLBERT_VECTOR)):
        assert isinstance(vectors, Mapping)
        return {
            "kind": "hybrid",
            "dense": _params_spec(vectors[DENSE_VECTOR], recorded.get("dense") or {}),
            "multivector": _params_spec(vectors[COLBERT_VECTOR], recorded.get("multivector") or {}),
        }
    # other named vectors, or none: not a collection of ours
    return {"dimension": None, "distance": f"named vectors {names}", "vector_type": None, "model": None}


def first_stage_of(config: models.CollectionConfig) -> tuple[int | None, dict[str, Any] | None]:
    """(size of the ``"muvera"`` vector or None, the recorded first stage or None) of a collection."""
    recorded = ((config.metadata or {}).get(METADATA_KEY) or {}).get("first_stage")
    vectors = config.params.vectors
    params = vectors.get(MUVERA_VECTOR) if isinstance(vectors, Mapping) else None
    return (None if params is None else params.size), recorded

"""How a record is laid out in a Qdrant point, and a CollectionSpec in a collection: one module
for both halves of the adapter (the client's :mod:`~lfm_retrieval_qdrant.collection`, server and
local mode, and Qdrant Edge's :mod:`~lfm_retrieval_qdrant.edge`), which only turn it into their
engine's classes.

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
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from lfm_retrieval.errors import CollectionMismatchError, InvalidFilterError
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

#: The payload index schemas a store accepts (``payload_indexes={"field": schema}``).
PAYLOAD_SCHEMA_NAMES = ("keyword", "integer", "float", "bool", "geo", "text", "datetime", "uuid")

T = TypeVar("T")


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


def to_hit(point: Any, spec: CollectionSpec) -> Hit:
    """A scored point (qdrant-client's or qdrant-edge's) as the protocol's Hit: the caller's key and
    payload, higher score better."""
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
#
# Both halves (the client's collection.py, Qdrant Edge's edge.py) build and read collections
# through these: which vectors a spec has and their names, the spec read back from the
# engine's vector settings, the recorded metadata, and the checks on store options.

#: The name of a collection's one unnamed vector (dense, or a multivector without a first stage).
UNNAMED = ""


@dataclass(frozen=True)
class VectorSettings:
    """One stored vector as an engine reports it, in the spec's words."""

    size: int | None
    distance: str
    vector_type: str
    multivector: bool

    def as_spec(self, recorded: Mapping[str, Any]) -> dict[str, Any]:
        """The ``as_metadata()`` form of this vector, with the model ``recorded`` names (None when none)."""
        return {
            "kind": "multivector" if self.multivector else "dense",
            "dimension": self.size,
            "distance": self.distance,
            "vector_type": self.vector_type,
            "model": recorded.get("model"),
        }


def vector_specs(spec: AnySpec, first_stage: CollectionSpec | None = None) -> dict[str, CollectionSpec]:
    """The vectors of a collection for ``spec`` by name: the one unnamed vector (:data:`UNNAMED`),
    ``"dense"`` + ``"colbert"`` for a hybrid spec, or ``"colbert"`` + ``"muvera"`` for a multivector
    spec with a first stage (``first_stage``: the spec of its MUVERA vector)."""
    if isinstance(spec, HybridSpec):
        return {DENSE_VECTOR: spec.dense, COLBERT_VECTOR: spec.multivector}
    if first_stage is not None:
        return {COLBERT_VECTOR: spec, MUVERA_VECTOR: first_stage}
    return {UNNAMED: spec}


def engine_vectors(vectors: Mapping[str, T]) -> T | dict[str, T]:
    """An engine's vectors config: the unnamed vector itself, or the named ones."""
    return vectors[UNNAMED] if list(vectors) == [UNNAMED] else dict(vectors)


def collection_metadata(spec: AnySpec, first_stage: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The metadata recorded with the collection when it is created (with its first stage, if any)."""
    recorded = {**spec.as_metadata(), "layout": LAYOUT_VERSION}
    if first_stage is not None:
        recorded["first_stage"] = dict(first_stage)
    return {METADATA_KEY: recorded}


def spec_from_vectors(vectors: Mapping[str, VectorSettings], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The spec an existing collection holds (``as_metadata()`` form of its kind).

    Kind, size, distance and datatype come from the collection's actual vectors (``vectors``,
    by name; :data:`UNNAMED` for an unnamed one): an unnamed vector with a multivector config, or
    the named vectors ``"colbert"`` + ``"muvera"``, is a multivector collection; ``"dense"`` +
    ``"colbert"`` a hybrid one. The model comes from the ``recorded`` metadata (None when the
    collection was not made by this package, which then matches no spec that names a model).
    """
    names = sorted(vectors)
    if names == [UNNAMED]:
        return vectors[UNNAMED].as_spec(recorded)
    if names == sorted((COLBERT_VECTOR, MUVERA_VECTOR)):  # a multivector collection with a first stage
        return vectors[COLBERT_VECTOR].as_spec(recorded)
    if names == sorted((DENSE_VECTOR, COLBERT_VECTOR)):
        return {
            "kind": "hybrid",
            "dense": vectors[DENSE_VECTOR].as_spec(recorded.get("dense") or {}),
            "multivector": vectors[COLBERT_VECTOR].as_spec(recorded.get("multivector") or {}),
        }
    # other named vectors, or none: not a collection of ours
    return {"dimension": None, "distance": f"named vectors {names}", "vector_type": None, "model": None}


def first_stage_from_vectors(
    vectors: Mapping[str, VectorSettings], recorded: Mapping[str, Any]
) -> tuple[int | None, dict[str, Any] | None]:
    """(size of the ``"muvera"`` vector or None, the recorded first stage or None) of a collection."""
    muvera = vectors.get(MUVERA_VECTOR)
    return (None if muvera is None else muvera.size), recorded.get("first_stage")


def unrecorded_collection(uri: str, found: Mapping[str, Any], made_by: str = "another tool") -> CollectionMismatchError:
    """The error for an existing collection that records no spec of this package (``made_by``: who may have made it)."""
    return CollectionMismatchError(
        f"collection {uri!r} already exists but records no lfm-retrieval spec (made by {made_by}): "
        f"found {dict(found)}; nothing was written"
    )


def check_payload_indexes(indexes: Mapping[str, str], schemas: Mapping[str, T]) -> dict[str, T]:
    """``payload_indexes`` as the engine's schemas (``schemas``: by name); ValueError naming a bad one."""
    checked = {}
    for field, schema in indexes.items():
        if schema not in schemas:
            raise ValueError(f"payload index on {field!r}: schema {schema!r} is not one of {sorted(schemas)}")
        field_path(field)  # a name Qdrant can address
        checked[field] = schemas[schema]
    return checked

"""Records, stable ids and collection specs shared by every store."""

from __future__ import annotations

import json
import math
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lfm_retrieval.encoders import ColBERTEncoder
from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError

#: Largest finite float16 value: a float16 collection cannot hold more.
FLOAT16_MAX = 65504.0

# Fixed namespace: the same key gives the same id in every store, on every run.
ID_NAMESPACE = uuid.UUID("6f1d5a4e-2b7c-5e0f-9a31-4c8e2d7b1f60")

Distance = Literal["cosine", "dot", "euclid"]
VectorType = Literal["float32", "float16"]
# "dense": one vector per record; "multivector": a matrix of token vectors per record (MaxSim).
Kind = Literal["dense", "multivector"]


def stable_id(key: str) -> str:
    """The store id of a caller's key (e.g. ``"SKU-1001/en"``): uuid5, so re-runs never duplicate."""
    if not isinstance(key, str) or not key:
        raise InvalidRecordError(f"record key must be a non-empty string, got {key!r}")
    return str(uuid.uuid5(ID_NAMESPACE, key))


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection holds; an existing collection must match it exactly.

    ``kind="multivector"`` collections hold a matrix of ``dimension``-wide token vectors
    per record, scored with MaxSim (``distance`` is then the per-token similarity).
    """

    dimension: int
    distance: Distance = "cosine"
    vector_type: VectorType = "float32"
    model: str = ""
    kind: Kind = "dense"

    def __post_init__(self) -> None:
        if self.kind not in ("dense", "multivector"):
            raise ValueError(f"kind must be 'dense' or 'multivector', not {self.kind!r}")
        if not isinstance(self.dimension, int) or self.dimension < 1:
            raise ValueError(f"dimension must be a positive int, not {self.dimension!r}")
        if self.distance not in ("cosine", "dot", "euclid"):
            raise ValueError(f"distance must be 'cosine', 'dot' or 'euclid', not {self.distance!r}")
        if self.vector_type not in ("float32", "float16"):
            raise ValueError(f"vector_type must be 'float32' or 'float16', not {self.vector_type!r}")
        if self.kind == "multivector" and self.distance == "euclid":
            raise ValueError("multivector (MaxSim) collections use 'cosine' or 'dot' token similarity, not 'euclid'")

    @classmethod
    def for_encoder(cls, encoder: Any, *, vector_type: VectorType = "float32") -> CollectionSpec:
        """The spec of a collection holding ``encoder``'s document vectors: cosine for a dense
        encoder, a cosine-MaxSim multivector for a ColBERT encoder."""
        kind: Kind = "multivector" if isinstance(encoder, ColBERTEncoder) else "dense"
        return cls(encoder.dimension, "cosine", vector_type, encoder.model_id, kind)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dimension": self.dimension,
            "distance": self.distance,
            "vector_type": self.vector_type,
            "model": self.model,
        }

    def check_matches(self, existing: Mapping[str, Any], where: str) -> None:
        """Raise CollectionMismatchError if ``existing`` (as stored) differs from this spec."""
        existing = {"kind": "dense", **existing}
        wanted = self.as_metadata()
        diffs = [f"{k}: stored {existing.get(k)!r}, asked {v!r}" for k, v in wanted.items() if existing.get(k) != v]
        if diffs:
            raise CollectionMismatchError(
                f"{where} already exists with other settings ({'; '.join(diffs)}); nothing was written"
            )


@dataclass(frozen=True)
class HybridSpec:
    """A collection holding, per record, a dense vector (first stage) and ColBERT token vectors (rerank)."""

    dense: CollectionSpec
    multivector: CollectionSpec
    kind: Literal["hybrid"] = "hybrid"

    def __post_init__(self) -> None:
        if self.dense.kind != "dense" or self.multivector.kind != "multivector":
            raise ValueError("HybridSpec needs a dense spec and a multivector spec, in that order")

    @classmethod
    def for_encoders(cls, dense: Any, colbert: Any, *, vector_type: VectorType = "float32") -> HybridSpec:
        """The spec for ``dense``'s document vectors plus ``colbert``'s token vectors."""
        return cls(
            CollectionSpec.for_encoder(dense, vector_type=vector_type),
            CollectionSpec.for_encoder(colbert, vector_type=vector_type),
        )

    def as_metadata(self) -> dict[str, Any]:
        return {"kind": "hybrid", "dense": self.dense.as_metadata(), "multivector": self.multivector.as_metadata()}

    def check_matches(self, existing: Mapping[str, Any], where: str) -> None:
        """Raise CollectionMismatchError if ``existing`` (as stored) differs from this spec."""
        if existing.get("kind", "dense") != "hybrid":
            raise CollectionMismatchError(
                f"{where} already exists as a {existing.get('kind', 'dense')!r} collection, not a hybrid one; "
                "nothing was written"
            )
        self.dense.check_matches(existing.get("dense", {}), f"{where} (dense vector)")
        self.multivector.check_matches(existing.get("multivector", {}), f"{where} (multivector)")


AnySpec = CollectionSpec | HybridSpec


def spec_from_metadata(metadata: Mapping[str, Any]) -> AnySpec:
    """The spec a store recorded with ``as_metadata()``."""
    if metadata.get("kind") == "hybrid":
        return HybridSpec(CollectionSpec(**metadata["dense"]), CollectionSpec(**metadata["multivector"]))
    return CollectionSpec(**metadata)


@dataclass
class Record:
    """One item to store: the caller's key, its vectors, and payload for filters and display.

    A dense collection takes ``vector`` (one vector); a multivector collection takes
    ``token_vectors`` (a ``(tokens, dim)`` array, e.g. one ColBERT document); a hybrid
    collection takes both. ``fingerprint`` is opaque to stores: they keep it with the
    vectors and hand it back from ``fingerprints()`` (the catalog job uses it to skip
    unchanged records).
    """

    key: str
    vector: np.ndarray | Sequence[float] | None = None
    payload: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""
    token_vectors: np.ndarray | Sequence[Sequence[float]] | None = None

    @property
    def id(self) -> str:
        return stable_id(self.key)


@dataclass(frozen=True)
class Hit:
    """A search result: the stored id and key, the score (higher is better) and the payload."""

    id: str
    key: str
    score: float
    payload: dict[str, Any]


def validate_records(records: Iterable[Record], spec: AnySpec) -> list[tuple[str, Any, Record]]:
    """Check a whole batch before any of it is written: ``(id, vectors, record)`` per record.

    ``vectors`` is a float32 vector (dense), a float32 ``(tokens, dim)`` matrix
    (multivector) or the pair of both (hybrid). Raises InvalidRecordError naming the
    record's key for a missing key, vectors of the wrong shape or kind for the collection,
    NaN or infinite values, values beyond float16's range in a float16 collection, or a
    payload that is not strict JSON (see :func:`check_payload`). A key given twice keeps
    its last record (as two upserts would), in the order of last occurrences.
    """
    checked: dict[str, tuple[str, Any, Record]] = {}
    for position, record in enumerate(records):
        if not isinstance(record, Record):
            raise InvalidRecordError(f"records[{position}] is {type(record).__name__}, expected Record")
        record_id = stable_id(record.key)
        check_payload(record.key, record.payload)
        if not isinstance(record.fingerprint, str):
            raise InvalidRecordError(f"record {record.key!r}: fingerprint must be a string; nothing written")
        if isinstance(spec, HybridSpec):
            vectors: Any = (_dense_vector(record, spec.dense), _token_matrix(record, spec.multivector))
        elif spec.kind == "multivector":
            if record.vector is not None:
                raise InvalidRecordError(
                    f"record {record.key!r}: a dense vector was given to a multivector collection "
                    "(use token_vectors=); nothing written"
                )
            vectors = _token_matrix(record, spec)
        else:
            if record.token_vectors is not None:
                raise InvalidRecordError(
                    f"record {record.key!r}: token vectors were given to a dense collection (use vector=); "
                    "nothing written"
                )
            vectors = _dense_vector(record, spec)
        checked.pop(record_id, None)  # the last occurrence wins, in its own place
        checked[record_id] = (record_id, vectors, record)
    return list(checked.values())


def check_payload(key: str, payload: Any) -> dict[str, Any]:
    """``payload`` if it is strict JSON, else InvalidRecordError naming the record.

    Strict JSON: a dict whose keys (at every level) are strings and whose values are
    None, bool, str, int, finite float, list, tuple or dict, so every store keeps it
    unchanged (NaN, infinity, numpy scalars and objects are refused, not converted).
    """
    if not isinstance(payload, dict):
        raise InvalidRecordError(f"record {key!r}: payload must be a dict; nothing written")
    try:
        _check_json(payload, "payload")
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise InvalidRecordError(f"record {key!r}: payload is not JSON ({error}); nothing written") from None
    return payload


def _check_json(value: Any, path: str) -> None:
    """What ``json.dumps`` would let through but not keep: non-string keys, NaN and infinity."""
    if isinstance(value, dict):
        for name, item in value.items():
            if not isinstance(name, str):
                raise TypeError(f"{path} has a key {name!r} that is not a string")
            _check_json(item, f"{path}[{name!r}]")
    elif isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_json(item, f"{path}[{i}]")
    elif isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{path} = {value} is not a finite number")


def _dense_vector(record: Record, spec: CollectionSpec) -> np.ndarray:
    return _checked(record, "vector", spec)


def _token_matrix(record: Record, spec: CollectionSpec) -> np.ndarray:
    return _checked(record, "token_vectors", spec)


def _checked(record: Record, what: str, spec: CollectionSpec) -> np.ndarray:
    """``record.vector`` (one ``dimension``-wide row) or ``record.token_vectors`` (at least one such row), checked."""
    values = getattr(record, what)
    if values is None:
        raise InvalidRecordError(f"record {record.key!r}: no {what} given; nothing written")
    array = _float32(values, record.key, what)
    one = what == "vector"
    if array.ndim != (1 if one else 2) or array.shape[-1] != spec.dimension:
        expected = f"({spec.dimension},)" if one else f"(tokens, {spec.dimension})"
        raise InvalidRecordError(
            f"record {record.key!r}: {what} {'has' if one else 'have'} shape {array.shape}, expected {expected}; "
            "nothing written"
        )
    if array.shape[0] == 0:
        raise InvalidRecordError(f"record {record.key!r}: zero token vectors; nothing written")
    _check_range(array, record.key, what, spec)
    return array


def _check_range(values: np.ndarray, key: str, what: str, spec: CollectionSpec) -> None:
    if spec.vector_type == "float16" and float(np.abs(values).max()) > FLOAT16_MAX:
        raise InvalidRecordError(
            f"record {key!r}: values in {what} are beyond float16's range (±{FLOAT16_MAX:g}) "
            "for a float16 collection; nothing written"
        )


def _float32(values: Any, key: str, what: str) -> np.ndarray:
    try:
        array = np.asarray(values, dtype=np.float32)
    except (ValueError, TypeError) as exc:  # ragged rows: token vectors of mixed widths
        raise InvalidRecordError(
            f"record {key!r}: {what} are not one rectangular array ({exc}); nothing written"
        ) from exc
    if not np.isfinite(array).all():
        raise InvalidRecordError(f"record {key!r}: {what} contain NaN or infinity; nothing written")
    return array


def check_query_vector(vector: np.ndarray | Sequence[float], spec: CollectionSpec) -> np.ndarray:
    """A query vector as float32, of the collection's dimension and finite."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.shape[0] != spec.dimension:
        raise ValueError(f"query vector has shape {array.shape}, expected ({spec.dimension},)")
    if not np.isfinite(array).all():
        raise ValueError("query vector contains NaN or infinity")
    return array


def check_query_tokens(token_vectors: np.ndarray | Sequence[Sequence[float]], spec: CollectionSpec) -> np.ndarray:
    """A query's token vectors as a finite float32 ``(tokens, dim)`` matrix with at least one row."""
    try:
        matrix = np.asarray(token_vectors, dtype=np.float32)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"query token vectors are not one rectangular array ({exc})") from exc
    if matrix.ndim != 2 or matrix.shape[1] != spec.dimension:
        raise ValueError(f"query token vectors have shape {matrix.shape}, expected (tokens, {spec.dimension})")
    if matrix.shape[0] == 0:
        raise ValueError("query has zero token vectors")
    if not np.isfinite(matrix).all():
        raise ValueError("query token vectors contain NaN or infinity")
    return matrix

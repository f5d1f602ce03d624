"""Records, stable ids and collection specs shared by every store."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from lfm_retrieval.errors import InvalidRecordError

# Fixed namespace: the same key gives the same id in every store, on every run.
ID_NAMESPACE = uuid.UUID("6f1d5a4e-2b7c-5e0f-9a31-4c8e2d7b1f60")

Distance = Literal["cosine", "dot", "euclid"]
VectorType = Literal["float32", "float16"]


def stable_id(key: str) -> str:
    """The store id of a caller's key (e.g. ``"SKU-1001/en"``): uuid5, so re-runs never duplicate."""
    if not isinstance(key, str) or not key:
        raise InvalidRecordError(f"record key must be a non-empty string, got {key!r}")
    return str(uuid.uuid5(ID_NAMESPACE, key))


@dataclass(frozen=True)
class CollectionSpec:
    """What a collection holds; an existing collection must match it exactly."""

    dimension: int
    distance: Distance = "cosine"
    vector_type: VectorType = "float32"
    model: str = ""

    def __post_init__(self) -> None:
        if not isinstance(self.dimension, int) or self.dimension < 1:
            raise ValueError(f"dimension must be a positive int, not {self.dimension!r}")
        if self.distance not in ("cosine", "dot", "euclid"):
            raise ValueError(f"distance must be 'cosine', 'dot' or 'euclid', not {self.distance!r}")
        if self.vector_type not in ("float32", "float16"):
            raise ValueError(f"vector_type must be 'float32' or 'float16', not {self.vector_type!r}")

    @classmethod
    def for_encoder(cls, encoder: Any, *, vector_type: VectorType = "float32") -> CollectionSpec:
        """The spec of a collection holding ``encoder``'s document vectors (cosine)."""
        return cls(dimension=encoder.dimension, distance="cosine", vector_type=vector_type, model=encoder.model_id)

    def as_metadata(self) -> dict[str, Any]:
        return {
            "dimension": self.dimension,
            "distance": self.distance,
            "vector_type": self.vector_type,
            "model": self.model,
        }

    def check_matches(self, existing: Mapping[str, Any], where: str) -> None:
        """Raise CollectionMismatchError if ``existing`` (as stored) differs from this spec."""
        from lfm_retrieval.errors import CollectionMismatchError

        wanted = self.as_metadata()
        diffs = [f"{k}: stored {existing.get(k)!r}, asked {v!r}" for k, v in wanted.items() if existing.get(k) != v]
        if diffs:
            raise CollectionMismatchError(
                f"{where} already exists with other settings ({'; '.join(diffs)}); nothing was written"
            )


@dataclass
class Record:
    """One item to store: the caller's key, its vector, and payload for filters and display.

    ``fingerprint`` is opaque to stores: they keep it with the vector and hand it back
    from ``DenseStore.fingerprints()`` (the catalog job uses it to skip unchanged records).
    """

    key: str
    vector: np.ndarray | Sequence[float]
    payload: dict[str, Any] = field(default_factory=dict)
    fingerprint: str = ""

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


def validate_records(records: Iterable[Record], spec: CollectionSpec) -> list[tuple[str, np.ndarray, Record]]:
    """Check a whole batch before any of it is written: (id, float32 vector, record) per record.

    Raises InvalidRecordError naming the record's key for a missing key, a vector of the
    wrong length, a NaN or infinite value, or a payload that is not a dict of JSON values.
    """
    checked = []
    for position, record in enumerate(records):
        if not isinstance(record, Record):
            raise InvalidRecordError(f"records[{position}] is {type(record).__name__}, expected Record")
        record_id = stable_id(record.key)
        vector = np.asarray(record.vector, dtype=np.float32)
        if vector.ndim != 1 or vector.shape[0] != spec.dimension:
            raise InvalidRecordError(
                f"record {record.key!r}: vector has shape {vector.shape}, expected ({spec.dimension},); nothing written"
            )
        if not np.isfinite(vector).all():
            raise InvalidRecordError(f"record {record.key!r}: vector contains NaN or infinity; nothing written")
        if not isinstance(record.payload, dict):
            raise InvalidRecordError(f"record {record.key!r}: payload must be a dict; nothing written")
        checked.append((record_id, vector, record))
    return checked


def check_query_vector(vector: np.ndarray | Sequence[float], spec: CollectionSpec) -> np.ndarray:
    """A query vector as float32, of the collection's dimension and finite."""
    array = np.asarray(vector, dtype=np.float32)
    if array.ndim != 1 or array.shape[0] != spec.dimension:
        raise ValueError(f"query vector has shape {array.shape}, expected ({spec.dimension},)")
    if not np.isfinite(array).all():
        raise ValueError("query vector contains NaN or infinity")
    return array

"""``MilvusDenseStore``: the dense store protocol on pymilvus' ``MilvusClient`` (server or Lite)."""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np

from lfm_retrieval.stores.base import DenseStore
from lfm_retrieval.stores.filters import Node
from lfm_retrieval.stores.records import CollectionSpec, Hit, Record
from lfm_retrieval_milvus.collection import MilvusCollection
from lfm_retrieval_milvus.layout import (
    FINGERPRINT,
    KEY,
    METADATA,
    METRICS,
    VECTOR,
    build_index_params,
    build_schema,
    spec_properties,
)
from lfm_retrieval_milvus.rows import to_rows


class MilvusDenseStore(MilvusCollection, DenseStore):
    """A Milvus collection (server, or a Milvus Lite file) holding one encoder's vectors.

    Options: see :class:`~lfm_retrieval_milvus.collection.MilvusCollection`.
    """

    def _create(self, spec: CollectionSpec) -> None:
        self._check_dense_supported(spec)
        self._create_collection(build_schema(spec), build_index_params(spec, **self._index), spec_properties(spec))

    def _upsert(self, rows: list[tuple[str, np.ndarray, Record]]) -> int:
        spec = self._require_spec()
        self._write_rows(to_rows(rows, spec.vector_type))  # every check runs before the first request
        return len(rows)

    def _scan_records(self, batch_size: int) -> Iterator[Record]:
        for row in self._iterate("", [KEY, VECTOR, METADATA, FINGERPRINT], batch_size=1000):
            vector = self._stored_value(VECTOR, row[VECTOR]).astype(np.float32)
            yield Record(row[KEY], vector, row[METADATA] or {}, row[FINGERPRINT])

    def _search(self, vector: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        spec = self._require_spec()
        query = vector.astype(np.float16) if spec.vector_type == "float16" else vector
        hits = self._vector_search(query, k, filter, METRICS[spec.distance], [])
        return [
            Hit(hit["id"], hit["entity"][KEY], _score(hit["distance"], spec.distance), hit["entity"][METADATA] or {})
            for hit in hits
        ]


def _score(value: float, distance: str) -> float:
    """Milvus' distance as a similarity, higher is better (L2 comes squared: -sqrt of it)."""
    return -math.sqrt(max(float(value), 0.0)) if distance == "euclid" else float(value)

"""An exact, in-process store: brute-force search over numpy arrays.

The reference the database adapters are measured against (recall of exact search),
and a store for tests and small jobs. ``memory://name`` opens a process-wide
collection by name; nothing is persisted.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from lfm_retrieval.stores.base import DenseStore
from lfm_retrieval.stores.filters import Node, matches
from lfm_retrieval.stores.records import CollectionSpec, Hit, Record

_COLLECTIONS: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


class MemoryStore(DenseStore):
    """Exact nearest-neighbour search in memory (cosine, dot or negative euclidean)."""

    def __init__(self, name: str = "default") -> None:
        self.uri = f"memory://{name}"
        self._name = name

    @property
    def _data(self) -> dict[str, Any]:
        return _COLLECTIONS[self._name]

    def _read_spec(self) -> dict[str, Any] | None:
        data = _COLLECTIONS.get(self._name)
        return None if data is None else dict(data["spec"])

    def _create(self, spec: CollectionSpec) -> None:
        with _LOCK:
            _COLLECTIONS[self._name] = {"spec": spec.as_metadata(), "rows": {}}

    def _upsert(self, rows: list[tuple[str, np.ndarray, Record]]) -> int:
        with _LOCK:
            for record_id, vector, record in rows:
                self._data["rows"][record_id] = (record.key, vector.copy(), dict(record.payload), record.fingerprint)
        return len(rows)

    def _delete(self, ids: list[str]) -> None:
        with _LOCK:
            for record_id in ids:
                self._data["rows"].pop(record_id, None)

    def _update_payloads(self, rows: list[tuple[str, str, dict[str, Any], str]]) -> int:
        with _LOCK:
            stored = self._data["rows"]
            hits = [(rid, payload, fp) for rid, _, payload, fp in rows if rid in stored]
            for rid, payload, fp in hits:
                key, vector, _, _ = stored[rid]
                stored[rid] = (key, vector, dict(payload), fp)
        return len(hits)

    def _scan_fingerprints(self) -> list[tuple[str, str]]:
        return [(key, fp) for key, _, _, fp in self._data["rows"].values()]

    def _count(self, filter: Node | None) -> int:
        return sum(matches(filter, row[2]) for row in self._data["rows"].values())

    def _search(self, vector: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        rows = [(rid, row) for rid, row in self._data["rows"].items() if matches(filter, row[2])]
        if not rows:
            return []
        matrix = np.stack([row[1] for _, row in rows])
        distance = self._data["spec"]["distance"]
        if distance == "cosine":
            norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(vector)), 1e-12)
            scores = matrix @ vector / np.maximum(norms, 1e-12)
        elif distance == "dot":
            scores = matrix @ vector
        else:
            scores = -np.linalg.norm(matrix - vector, axis=1)
        top = np.argsort(-scores, kind="stable")[:k]
        return [Hit(rows[i][0], rows[i][1][0], float(scores[i]), dict(rows[i][1][2])) for i in top]


def from_uri(uri: str, **_: Any) -> MemoryStore:
    """``memory://name``."""
    parts = urlsplit(uri)
    return MemoryStore(parts.netloc + parts.path or "default")

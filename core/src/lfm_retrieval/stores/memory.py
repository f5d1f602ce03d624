"""Exact, in-process stores: brute-force search over numpy arrays.

The reference the database adapters are measured against (recall of exact search), and
stores for tests and small jobs. ``memory://name`` opens a process-wide collection by
name (``kind="multivector"`` / ``"hybrid"`` for the other kinds); nothing is persisted.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from lfm_retrieval.scoring import maxsim_scores
from lfm_retrieval.stores.base import DenseStore, HybridStore, MultiVectorStore, Store
from lfm_retrieval.stores.filters import Node, predicate
from lfm_retrieval.stores.records import AnySpec, Hit, Record
from lfm_retrieval.stores.registry import serves
from lfm_retrieval.vectors import unit_rows

_COLLECTIONS: dict[str, dict[str, Any]] = {}
_LOCK = threading.Lock()


class _MemoryCollection(Store):
    """Rows ``{id: (key, vectors, payload, fingerprint)}`` in a process-wide dict."""

    def __init__(self, name: str = "default") -> None:
        self.uri = f"memory://{name}"
        self._name = name

    @property
    def _data(self) -> dict[str, Any]:
        return _COLLECTIONS[self._name]

    def _read_spec(self) -> dict[str, Any] | None:
        data = _COLLECTIONS.get(self._name)
        return None if data is None else dict(data["spec"])

    def _create(self, spec: AnySpec) -> None:
        with _LOCK:
            _COLLECTIONS[self._name] = {"spec": spec.as_metadata(), "rows": {}}

    def _upsert(self, rows: list[tuple[str, Any, Record]]) -> int:
        with _LOCK:
            for record_id, vectors, record in rows:
                self._data["rows"][record_id] = (record.key, vectors, dict(record.payload), record.fingerprint)
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
                key, vectors, _, _ = stored[rid]
                stored[rid] = (key, vectors, dict(payload), fp)
        return len(hits)

    def _scan_fingerprints(self) -> list[tuple[str, str]]:
        return [(key, fp) for key, _, _, fp in self._data["rows"].values()]

    def _lookup_fingerprints(self, ids: list[str]) -> list[tuple[str, str]]:
        rows = self._data["rows"]
        return [(rows[rid][0], rows[rid][3]) for rid in ids if rid in rows]

    def _scan_records(self, batch_size: int) -> list[Record]:
        kind = self._data["spec"].get("kind", "dense")
        records = []
        for key, vectors, payload, fp in list(self._data["rows"].values()):
            if kind == "hybrid":
                records.append(Record(key, vectors[0].copy(), dict(payload), fp, token_vectors=vectors[1].copy()))
            elif kind == "multivector":
                records.append(Record(key, payload=dict(payload), fingerprint=fp, token_vectors=vectors.copy()))
            else:
                records.append(Record(key, vectors.copy(), dict(payload), fp))
        return records

    def _count(self, filter: Node | None) -> int:
        holds = predicate(filter)
        return sum(holds(row[2]) for row in self._data["rows"].values())

    def _matching(self, filter: Node | None) -> list[tuple[str, tuple]]:
        holds = predicate(filter)
        return [(rid, row) for rid, row in self._data["rows"].items() if holds(row[2])]


def _top(rows: list[tuple[str, tuple]], scores: np.ndarray, k: int) -> list[Hit]:
    top = np.argsort(-scores, kind="stable")[:k]
    return [Hit(rows[i][0], rows[i][1][0], float(scores[i]), dict(rows[i][1][2])) for i in top]


def _dense_scores(matrix: np.ndarray, vector: np.ndarray, distance: str) -> np.ndarray:
    if distance == "cosine":
        norms = np.linalg.norm(matrix, axis=1) * max(float(np.linalg.norm(vector)), 1e-12)
        return matrix @ vector / np.maximum(norms, 1e-12)
    if distance == "dot":
        return matrix @ vector
    return -np.linalg.norm(matrix - vector, axis=1)


def _maxsim(tokens: np.ndarray, documents: list[np.ndarray], distance: str) -> np.ndarray:
    """MaxSim with the collection's token similarity: cosine normalises rows (as Qdrant does), dot does not."""
    if distance == "cosine":
        tokens, documents = unit_rows(tokens), [unit_rows(d) for d in documents]
    return maxsim_scores([tokens], documents)[0]


class MemoryStore(_MemoryCollection, DenseStore):
    """Exact nearest-neighbour search in memory (cosine, dot or negative euclidean)."""

    def _search(self, vector: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        rows = self._matching(filter)
        if not rows:
            return []
        matrix = np.stack([row[1] for _, row in rows])
        return _top(rows, _dense_scores(matrix, vector, self._data["spec"]["distance"]), k)


class MemoryMultiVectorStore(_MemoryCollection, MultiVectorStore):
    """Exact MaxSim over every stored record (token vectors used as stored)."""

    def _search(self, token_vectors: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        rows = self._matching(filter)
        if not rows:
            return []
        distance = self._data["spec"]["distance"]
        return _top(rows, _maxsim(token_vectors, [row[1] for _, row in rows], distance), k)


class MemoryHybridStore(_MemoryCollection, HybridStore):
    """Exact dense top-``prefetch``, reordered by exact MaxSim."""

    def _search(
        self, vector: np.ndarray, token_vectors: np.ndarray, k: int, prefetch: int, filter: Node | None
    ) -> list[Hit]:
        rows = self._matching(filter)
        if not rows:
            return []
        distance = self._data["spec"]["dense"]["distance"]
        dense = _dense_scores(np.stack([row[1][0] for _, row in rows]), vector, distance)
        candidates = [rows[i] for i in np.argsort(-dense, kind="stable")[:prefetch]]
        scores = _maxsim(
            token_vectors, [row[1][1] for _, row in candidates], self._data["spec"]["multivector"]["distance"]
        )
        return _top(candidates, scores, k)


_KINDS: dict[str, type[_MemoryCollection]] = {
    "dense": MemoryStore,
    "multivector": MemoryMultiVectorStore,
    "hybrid": MemoryHybridStore,
}


@serves(*_KINDS)
def from_uri(uri: str, *, kind: str = "dense", **_: Any) -> Store:
    """``memory://name``; ``kind`` is "dense", "multivector" or "hybrid"."""
    parts = urlsplit(uri)
    return _KINDS[kind](parts.netloc + parts.path or "default")

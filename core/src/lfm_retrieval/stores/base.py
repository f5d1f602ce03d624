"""The protocol every dense store speaks, whatever the database behind it."""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lfm_retrieval.errors import InvalidRecordError
from lfm_retrieval.stores.filters import Node, parse_filter
from lfm_retrieval.stores.records import CollectionSpec, Hit, Record, stable_id

if TYPE_CHECKING:
    from lfm_retrieval.encoders import DenseEncoder

FilterSpec = Mapping[str, Any] | Node | None


class DenseStore(ABC):
    """A collection of (id, vector, payload) in one database, for one encoder.

    Adapters implement the ``_``-prefixed methods; this class validates input first, so
    a bad batch is refused whole, before anything is written.
    """

    #: The URI the store was opened from (for messages).
    uri: str
    spec: CollectionSpec | None = None

    # -- schema -----------------------------------------------------------------------------
    def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the collection for ``spec``, or check that the existing one matches it.

        Raises CollectionMismatchError before anything is written when it does not.
        """
        existing = self._read_spec()
        if existing is None:
            self._create(spec)
        else:
            spec.check_matches(existing, f"collection {self.uri!r}")
        self.spec = spec

    def _require_spec(self) -> CollectionSpec:
        if self.spec is None:
            existing = self._read_spec()
            if existing is None:
                raise LookupError(f"collection {self.uri!r} does not exist; call ensure_collection(spec) first")
            self.spec = CollectionSpec(**existing)
        return self.spec

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, records: Iterable[Record], *, batch_size: int = 512) -> int:
        """Insert or replace records by their stable id; returns how many were written.

        Each batch of ``batch_size`` is validated whole before it is written.
        """
        from lfm_retrieval.stores.records import validate_records

        spec = self._require_spec()
        written = 0
        batch: list[Record] = []
        for record in records:
            batch.append(record)
            if len(batch) >= batch_size:
                written += self._upsert(validate_records(batch, spec))
                batch = []
        if batch:
            written += self._upsert(validate_records(batch, spec))
        return written

    def delete(self, keys: Iterable[str]) -> None:
        """Delete records by the caller's keys (absent keys are ignored)."""
        ids = [stable_id(key) for key in keys]
        if ids:
            self._delete(ids)

    def update_payloads(self, items: Iterable[tuple[str, dict[str, Any], str]]) -> int:
        """Replace the payload and fingerprint of stored records, keeping their vectors.

        ``items`` are (key, payload, fingerprint); keys not stored are ignored. Returns
        how many were updated.
        """
        rows = []
        for key, payload, fingerprint in items:
            if not isinstance(payload, dict):
                raise InvalidRecordError(f"record {key!r}: payload must be a dict; nothing written")
            rows.append((stable_id(key), key, payload, fingerprint))
        return self._update_payloads(rows) if rows else 0

    # -- reads ------------------------------------------------------------------------------
    def count(self, filter: FilterSpec = None) -> int:
        """How many records the collection holds (matching ``filter``, if given)."""
        self._require_spec()
        return self._count(parse_filter(filter))

    def fingerprints(self) -> dict[str, str]:
        """Every stored record's key and fingerprint (what the catalog job compares against)."""
        self._require_spec()
        return dict(self._scan_fingerprints())

    def search(self, vector: Sequence[float] | np.ndarray, k: int = 10, filter: FilterSpec = None) -> list[Hit]:
        """The ``k`` nearest records to a query vector, best first, optionally filtered."""
        from lfm_retrieval.stores.records import check_query_vector

        if not isinstance(k, int) or k < 1:
            raise ValueError(f"k must be a positive int, not {k!r}")
        query = check_query_vector(vector, self._require_spec())
        return self._search(query, k, parse_filter(filter))

    def search_text(self, encoder: DenseEncoder, text: str, k: int = 10, filter: FilterSpec = None) -> list[Hit]:
        """Encode ``text`` on the query side with ``encoder`` and :meth:`search` with it."""
        spec = self._require_spec()
        if spec.model and encoder.model_id != spec.model:
            from lfm_retrieval.errors import CollectionMismatchError

            raise CollectionMismatchError(
                f"collection {self.uri!r} holds vectors of {spec.model!r}, not of {encoder.model_id!r}"
            )
        return self.search(encoder.encode_queries([text])[0], k, filter)

    async def aupsert(self, records: Iterable[Record], *, batch_size: int = 512) -> int:
        """Async :meth:`upsert` (runs in a worker thread unless the adapter has a native one)."""
        return await asyncio.to_thread(self.upsert, list(records), batch_size=batch_size)

    async def asearch(self, vector: Sequence[float] | np.ndarray, k: int = 10, filter: FilterSpec = None) -> list[Hit]:
        """Async :meth:`search`."""
        return await asyncio.to_thread(self.search, vector, k, filter)

    def close(self) -> None:  # noqa: B027 - optional for adapters
        """Release connections."""

    def __enter__(self) -> DenseStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- adapter hooks ----------------------------------------------------------------------
    @abstractmethod
    def _read_spec(self) -> dict[str, Any] | None:
        """The stored spec (CollectionSpec.as_metadata() form), or None if there is no collection."""

    @abstractmethod
    def _create(self, spec: CollectionSpec) -> None:
        """Create the collection (and record the spec with it)."""

    @abstractmethod
    def _upsert(self, rows: list[tuple[str, np.ndarray, Record]]) -> int:
        """Write validated (id, vector, record) rows atomically per call; return the count."""

    @abstractmethod
    def _delete(self, ids: list[str]) -> None: ...

    def _update_payloads(self, rows: list[tuple[str, str, dict[str, Any], str]]) -> int:
        """(id, key, payload, fingerprint) rows: replace payload and fingerprint, keep the vector."""
        raise NotImplementedError(f"{type(self).__name__} cannot update payloads yet")

    def _scan_fingerprints(self) -> Iterable[tuple[str, str]]:
        """(key, fingerprint) of every stored record."""
        raise NotImplementedError(f"{type(self).__name__} cannot list fingerprints yet")

    @abstractmethod
    def _count(self, filter: Node | None) -> int: ...

    @abstractmethod
    def _search(self, vector: np.ndarray, k: int, filter: Node | None) -> list[Hit]: ...

"""The protocols every store speaks, whatever the database behind it.

:class:`Store` holds what all collections share (schema check, idempotent upsert by
stable id, delete, payload updates, fingerprints, count); :class:`DenseStore`,
:class:`MultiVectorStore` and :class:`HybridStore` add the search of their kind.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np

from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError
from lfm_retrieval.stores.filters import Node, parse_filter
from lfm_retrieval.stores.records import (
    AnySpec,
    Hit,
    HybridSpec,
    Record,
    check_payload,
    check_query_tokens,
    check_query_vector,
    spec_from_metadata,
    stable_id,
    validate_records,
)

FilterSpec = Mapping[str, Any] | Node | None
TokenVectors = np.ndarray | Sequence[Sequence[float]]


class Store(ABC):
    """A collection of records (stable id, vectors, payload) in one database.

    Adapters implement the ``_``-prefixed methods; this class validates input first, so
    a bad batch is refused whole, before anything is written.
    """

    #: The URI the store was opened from (for messages).
    uri: str
    spec: AnySpec | None = None
    #: The kind of collection this class serves: "dense", "multivector" or "hybrid".
    kind: str = "dense"
    #: True where many processes may open the collection at once (a database server): the Ray
    #: engine's workers then read and write it themselves; otherwise only the driver does.
    shared: bool = False

    # -- schema -----------------------------------------------------------------------------
    def ensure_collection(self, spec: AnySpec) -> None:
        """Create the collection for ``spec``, or check that the existing one matches it.

        Raises CollectionMismatchError before anything is written when it does not
        (another dimension, distance, vector type, model or kind).
        """
        if spec.kind != self.kind:
            raise CollectionMismatchError(
                f"{type(self).__name__} stores {self.kind} collections, not {spec.kind} ones ({self.uri!r})"
            )
        existing = self._read_spec()
        if existing is None:
            self._create(spec)
        else:
            spec.check_matches(existing, f"collection {self.uri!r}")
        self.spec = spec

    def collection_spec(self) -> AnySpec:
        """What the collection holds (read from the database once); LookupError if it does not exist."""
        return self._require_spec()

    def _require_spec(self) -> Any:
        if self.spec is None:
            existing = self._read_spec()
            if existing is None:
                raise LookupError(f"collection {self.uri!r} does not exist; call ensure_collection(spec) first")
            spec = spec_from_metadata(existing)
            if spec.kind != self.kind:
                raise CollectionMismatchError(
                    f"collection {self.uri!r} is a {spec.kind} collection; open it as one (kind={spec.kind!r})"
                )
            self.spec = spec
        return self.spec

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, records: Iterable[Record], *, batch_size: int = 512) -> int:
        """Insert or replace records by their stable id; returns how many were written.

        Each batch of ``batch_size`` is validated whole before it is written.
        """
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

    @contextmanager
    def bulk_load(self) -> Iterator[Store]:
        """Group many ``upsert`` calls into one load (e.g. a job writing batch by batch).

        Stores whose indexes are cheaper to build once after a load (pgvector's HNSW)
        defer them to the end of the block; for the others this does nothing.
        """
        yield self

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
            check_payload(key, payload)
            if not isinstance(fingerprint, str):
                raise InvalidRecordError(f"record {key!r}: fingerprint must be a string; nothing written")
            rows.append((stable_id(key), key, payload, fingerprint))
        return self._update_payloads(rows) if rows else 0

    # -- reads ------------------------------------------------------------------------------
    def count(self, filter: FilterSpec = None) -> int:
        """How many records the collection holds (matching ``filter``, if given)."""
        self._require_spec()
        return self._count(parse_filter(filter))

    def fingerprints(self, keys: Iterable[str] | None = None) -> dict[str, str]:
        """Stored fingerprints by key (what the catalog job compares against).

        Without ``keys``, every stored record's; with ``keys``, only those of the given
        keys that are stored, read by id (a batch's lookup: memory and time grow with the
        batch, not with the collection)."""
        self._require_spec()
        if keys is None:
            return dict(self._scan_fingerprints())
        wanted = list(dict.fromkeys(keys))
        return dict(self._lookup_fingerprints([stable_id(key) for key in wanted])) if wanted else {}

    async def asearch(self, *query: Any, **options: Any) -> list[Hit]:
        """Async ``search`` of this kind, same arguments (in a worker thread, unless the adapter has its own)."""
        return await asyncio.to_thread(self.search, *query, **options)  # type: ignore[attr-defined]

    def scan(self, batch_size: int = 256) -> Iterator[Record]:
        """Every stored record read back (key, vectors as stored, payload, fingerprint), fetched
        ``batch_size`` at a time; what :func:`~lfm_retrieval.stores.copy.copy_collection` streams."""
        self._require_spec()
        if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
        yield from self._scan_records(batch_size)

    async def aupsert(self, records: Iterable[Record], *, batch_size: int = 512) -> int:
        """Async :meth:`upsert` (runs in a worker thread unless the adapter has a native one)."""
        return await asyncio.to_thread(self.upsert, list(records), batch_size=batch_size)

    def close(self) -> None:  # noqa: B027 - optional for adapters
        """Release connections."""

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- adapter hooks ----------------------------------------------------------------------
    @abstractmethod
    def _read_spec(self) -> dict[str, Any] | None:
        """The stored spec (CollectionSpec.as_metadata() form), or None if there is no collection."""

    @abstractmethod
    def _create(self, spec: AnySpec) -> None:
        """Create the collection (and record ``spec.as_metadata()`` with it)."""

    @abstractmethod
    def _upsert(self, rows: list[tuple[str, Any, Record]]) -> int:
        """Write validated (id, vectors, record) rows atomically per call; return the count.

        ``vectors`` is what :func:`validate_records` gives for the collection's kind."""

    @abstractmethod
    def _delete(self, ids: list[str]) -> None: ...

    @abstractmethod
    def _update_payloads(self, rows: list[tuple[str, str, dict[str, Any], str]]) -> int:
        """(id, key, payload, fingerprint) rows: replace payload and fingerprint, keep the vectors."""

    @abstractmethod
    def _scan_fingerprints(self) -> Iterable[tuple[str, str]]:
        """(key, fingerprint) of every stored record."""

    def _lookup_fingerprints(self, ids: list[str]) -> Iterable[tuple[str, str]]:
        """(key, fingerprint) of the stored records among ``ids``.

        Every adapter overrides this with a read by id; this fallback scans the collection."""
        wanted = set(ids)
        return [(key, fp) for key, fp in self._scan_fingerprints() if stable_id(key) in wanted]

    @abstractmethod
    def _count(self, filter: Node | None) -> int: ...

    def _scan_records(self, batch_size: int) -> Iterable[Record]:
        """Every stored record with its vectors (adapters that can read them back implement this)."""
        raise NotImplementedError(f"{type(self).__name__} ({self.uri!r}) cannot read its records back")


def _check_k(k: int) -> None:
    if not isinstance(k, int) or isinstance(k, bool) or k < 1:
        raise ValueError(f"k must be a positive int, not {k!r}")


class DenseStore(Store):
    """A collection of (id, vector, payload): nearest-neighbour search over one vector per record."""

    kind = "dense"

    def search(self, vector: Sequence[float] | np.ndarray, k: int = 10, filter: FilterSpec = None) -> list[Hit]:
        """The ``k`` nearest records to a query vector, best first, optionally filtered."""
        return self._search(*self._prepare_search(vector, k, filter))

    def _prepare_search(
        self, vector: Sequence[float] | np.ndarray, k: int = 10, filter: FilterSpec = None
    ) -> tuple[np.ndarray, int, Node | None]:
        """:meth:`search`'s arguments checked, as :meth:`_search` takes them (also for an adapter's own ``asearch``)."""
        _check_k(k)
        return check_query_vector(vector, self._require_spec()), k, parse_filter(filter)

    @abstractmethod
    def _search(self, vector: np.ndarray, k: int, filter: Node | None) -> list[Hit]: ...


class MultiVectorStore(Store):
    """A collection of (id, token vectors, payload) searched by late interaction (MaxSim).

    A record's score for a query is the sum, over the query's token vectors, of the best
    similarity with any of the record's token vectors.
    """

    kind = "multivector"

    def search(self, token_vectors: TokenVectors, k: int = 10, filter: FilterSpec = None) -> list[Hit]:
        """The ``k`` records with the highest MaxSim against a query's token vectors, best first."""
        return self._search(*self._prepare_search(token_vectors, k, filter))

    def _prepare_search(
        self, token_vectors: TokenVectors, k: int = 10, filter: FilterSpec = None
    ) -> tuple[np.ndarray, int, Node | None]:
        """:meth:`search`'s arguments checked, as :meth:`_search` takes them (also for an adapter's own ``asearch``)."""
        _check_k(k)
        return check_query_tokens(token_vectors, self._require_spec()), k, parse_filter(filter)

    @abstractmethod
    def _search(self, token_vectors: np.ndarray, k: int, filter: Node | None) -> list[Hit]: ...


class HybridStore(Store):
    """A collection with a dense vector and ColBERT token vectors per record.

    Search is two-stage: the ``prefetch`` nearest records by the dense vector, reordered by
    MaxSim of the token vectors; the filter applies to both stages.
    """

    kind = "hybrid"

    def search(
        self,
        vector: Sequence[float] | np.ndarray,
        token_vectors: TokenVectors,
        k: int = 10,
        filter: FilterSpec = None,
        *,
        prefetch: int = 100,
    ) -> list[Hit]:
        """The ``k`` best of the dense top-``prefetch``, ordered by MaxSim (scores are MaxSim)."""
        return self._search(*self._prepare_search(vector, token_vectors, k, filter, prefetch=prefetch))

    def _prepare_search(
        self,
        vector: Sequence[float] | np.ndarray,
        token_vectors: TokenVectors,
        k: int = 10,
        filter: FilterSpec = None,
        *,
        prefetch: int = 100,
    ) -> tuple[np.ndarray, np.ndarray, int, int, Node | None]:
        """:meth:`search`'s arguments checked, as :meth:`_search` takes them (also for an adapter's own ``asearch``)."""
        _check_k(k)
        _check_k(prefetch)
        spec: HybridSpec = self._require_spec()
        dense = check_query_vector(vector, spec.dense)
        tokens = check_query_tokens(token_vectors, spec.multivector)
        return dense, tokens, k, max(prefetch, k), parse_filter(filter)

    @abstractmethod
    def _search(
        self, vector: np.ndarray, token_vectors: np.ndarray, k: int, prefetch: int, filter: Node | None
    ) -> list[Hit]: ...

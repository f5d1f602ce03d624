"""``QdrantCollection``: what the dense, multivector and hybrid Qdrant stores share.

Connection (server or shared local client), schema check and creation, payload layout
and indexes, batched upserts, deletes, payload updates, fingerprints and counts. The
kinds differ only in how a record's vectors are sent and how a query is asked.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping
from typing import Any

from qdrant_client import QdrantClient, models
from qdrant_client.http.exceptions import UnexpectedResponse

from lfm_retrieval.stores import AnySpec, CollectionSpec, Hit, Record, Store
from lfm_retrieval.stores.filters import Node
from lfm_retrieval_qdrant import connection
from lfm_retrieval_qdrant.filters import to_filter
from lfm_retrieval_qdrant.layout import (
    FINGERPRINT_FIELD,
    KEY_FIELD,
    METADATA_KEY,
    PAYLOAD_SCHEMA_NAMES,
    UNNAMED,
    VectorSettings,
    check_payload_indexes,
    collection_metadata,
    engine_vectors,
    field_path,
    first_stage_from_vectors,
    point_fingerprint,
    point_payload,
    point_record,
    spec_from_vectors,
    to_hit,
    unrecorded_collection,
    vector_specs,
)
from lfm_retrieval_qdrant.uri import QdrantTarget, parse_uri

log = logging.getLogger(__name__)

SCROLL_PAGE = 1024
#: Most vector values one upsert request carries (about 20 MB of JSON; a server refuses
#: requests over 32 MB by default). A batch of long ColBERT documents is sent in several.
MAX_REQUEST_VALUES = 1_000_000
PAYLOAD_SCHEMAS = {name: models.PayloadSchemaType(name) for name in PAYLOAD_SCHEMA_NAMES}
DISTANCES = {"cosine": models.Distance.COSINE, "dot": models.Distance.DOT, "euclid": models.Distance.EUCLID}
_DISTANCE_NAMES = {value: name for name, value in DISTANCES.items()}


# -- the layout's vectors in qdrant-client's models ----------------------------------------


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
    """The collection's vectors (:func:`~lfm_retrieval_qdrant.layout.vector_specs`) as qdrant-client models."""
    return engine_vectors({name: vector_params(s) for name, s in vector_specs(spec, first_stage).items()})


def _settings(params: models.VectorParams) -> VectorSettings:
    datatype, distance = params.datatype, params.distance
    return VectorSettings(
        size=params.size,
        distance=_DISTANCE_NAMES.get(distance, str(getattr(distance, "value", distance))),
        vector_type="float32"
        if datatype in (None, models.Datatype.FLOAT32)
        else str(getattr(datatype, "value", datatype)),
        multivector=params.multivector_config is not None,
    )


def _vectors(config: models.CollectionConfig) -> dict[str, VectorSettings]:
    vectors = config.params.vectors
    if isinstance(vectors, models.VectorParams):
        return {UNNAMED: _settings(vectors)}
    return {name: _settings(params) for name, params in (vectors or {}).items()}


def _recorded(config: models.CollectionConfig) -> dict[str, Any]:
    return (config.metadata or {}).get(METADATA_KEY) or {}


def spec_of(config: models.CollectionConfig) -> dict[str, Any]:
    """The spec an existing collection holds (:func:`~lfm_retrieval_qdrant.layout.spec_from_vectors`)."""
    return spec_from_vectors(_vectors(config), _recorded(config))


def first_stage_of(config: models.CollectionConfig) -> tuple[int | None, dict[str, Any] | None]:
    """(size of the ``"muvera"`` vector or None, the recorded first stage or None) of a collection."""
    return first_stage_from_vectors(_vectors(config), _recorded(config))


class QdrantCollection(Store):
    """One Qdrant collection with the caller's keys and payloads (the base of every Qdrant store).

    ``qdrant+local://<folder>/<collection>`` uses the embedded local mode (stores on one
    folder share one client); ``qdrant://host:port/<collection>`` and
    ``qdrant+https://host:port/<collection>`` a server.

    Options: ``api_key``, ``timeout`` (seconds per request; an unreachable server is a
    StoreUnavailableError after at most about that long), ``https``, ``prefer_grpc``,
    ``grpc_port``, ``payload_indexes`` (``{"field": "keyword" | "integer" | "float" |
    "bool" | ...}``, created on a server; local mode has no payload indexes and ignores
    them), ``hnsw_ef`` and ``exact`` (search parameters; local mode always searches exactly).
    """

    def __init__(
        self,
        target: QdrantTarget | str,
        *,
        api_key: str | None = None,
        timeout: float | None = None,
        https: bool | None = None,
        prefer_grpc: bool = False,
        grpc_port: int = 6334,
        payload_indexes: Mapping[str, str] | None = None,
        hnsw_ef: int | None = None,
        exact: bool = False,
    ) -> None:
        self.target = parse_uri(target) if isinstance(target, str) else target
        self.uri = self.target.uri
        self.shared = not self.target.is_local  # a Qdrant server; a local-mode folder is this process's alone
        self.payload_indexes = check_payload_indexes(payload_indexes or {}, PAYLOAD_SCHEMAS)
        tuned = exact or hnsw_ef is not None
        self._search_params = models.SearchParams(hnsw_ef=hnsw_ef, exact=exact) if tuned else None
        if self.target.is_local:
            self._handle: connection.ClientHandle | None = connection.open_local(self.target.folder or "", self.uri)
        else:
            self._handle = connection.open_server(
                self.target, api_key=api_key, timeout=timeout, https=https, prefer_grpc=prefer_grpc, grpc_port=grpc_port
            )

    # -- plumbing ---------------------------------------------------------------------------
    @property
    def client(self) -> QdrantClient:
        """The underlying ``QdrantClient`` (shared with other stores on the same local folder)."""
        if self._handle is None:
            raise RuntimeError(f"store {self.uri!r} is closed")
        return self._handle.client

    @property
    def collection_name(self) -> str:
        return self.target.collection

    @contextlib.contextmanager
    def _call(self, operation: str) -> Iterator[QdrantClient]:
        """The client, under its lock (local mode), with transport failures named (as during ``operation``)."""
        client = self.client
        assert self._handle is not None
        with self._handle.lock, connection.connection_errors(self.target, operation, where=self._handle.where):
            yield client

    def close(self) -> None:
        """Release the client (a shared local client closes with its last store)."""
        handle, self._handle = self._handle, None
        if handle is None:
            return
        if handle.folder is not None:
            connection.release_local(handle.folder)
        else:
            handle.client.close()

    # -- schema -----------------------------------------------------------------------------
    def ensure_collection(self, spec: AnySpec) -> None:
        """Create the collection for ``spec`` or check the existing one; then add payload indexes."""
        with self._call("check the collection"):
            info = self._collection_config()
            if info is not None and METADATA_KEY not in (info.metadata or {}):
                made_by = "another tool, or by a Qdrant server older than 1.16, which drops collection metadata"
                raise unrecorded_collection(self.uri, spec_of(info), made_by)
            super().ensure_collection(spec)
            self._index_payload_fields()

    def _collection_config(self) -> models.CollectionConfig | None:
        with self._call("read the collection") as client:
            if not client.collection_exists(self.collection_name):
                return None
            return client.get_collection(self.collection_name).config

    def _read_spec(self) -> dict[str, Any] | None:
        config = self._collection_config()
        return None if config is None else spec_of(config)

    def _create(self, spec: AnySpec) -> None:
        with self._call("create the collection") as client:
            try:
                vectors, metadata = self._layout(spec)
                client.create_collection(self.collection_name, vectors_config=vectors, metadata=metadata)
            except UnexpectedResponse:  # another process may have created it first: check it instead
                existing = self._read_spec()
                if existing is None:
                    raise
                spec.check_matches(existing, f"collection {self.uri!r}")

    def _layout(self, spec: AnySpec) -> tuple[Any, dict[str, Any]]:
        """(vectors config, metadata) of a new collection for ``spec``."""
        return vectors_config(spec), collection_metadata(spec)

    def _index_payload_fields(self) -> None:
        if not self.payload_indexes:
            return
        if self.target.is_local:
            log.debug("local mode has no payload indexes; ignoring %s", sorted(self.payload_indexes))
            return
        with self._call("create payload indexes") as client:
            for field, schema in self.payload_indexes.items():
                client.create_payload_index(self.collection_name, field_path(field), field_schema=schema, wait=True)

    # -- writes -----------------------------------------------------------------------------
    def _point_vectors(self, rows: list[tuple[str, Any, Record]]) -> Any:
        """The ``Batch.vectors`` of validated rows, in this kind's layout."""
        raise NotImplementedError

    def _value_count(self, vectors: Any) -> int:
        """How many vector values a validated row sends."""
        if isinstance(vectors, tuple):
            return sum(int(part.size) for part in vectors)
        return int(vectors.size)

    def _upsert(self, rows: list[tuple[str, Any, Record]]) -> int:
        """Write validated rows, in as few requests as :data:`MAX_REQUEST_VALUES` allows."""
        payloads = [
            point_payload(record.key, record.payload, record.fingerprint) for _, _, record in rows
        ]  # every payload is checked before the first request
        for start, stop in _request_slices([self._value_count(vectors) for _, vectors, _ in rows]):
            chunk = rows[start:stop]
            batch = models.Batch(
                ids=[record_id for record_id, _, _ in chunk],
                vectors=self._point_vectors(chunk),
                payloads=payloads[start:stop],
            )
            with self._call("upsert") as client:
                client.upsert(self.collection_name, points=batch, wait=True)
        return len(rows)

    def _delete(self, ids: list[str]) -> None:
        with self._call("delete") as client:
            client.delete(self.collection_name, points_selector=models.PointIdsList(points=list(ids)), wait=True)

    def _update_payloads(self, rows: list[tuple[str, str, dict[str, Any], str]]) -> int:
        """Overwrite the payload (and fingerprint) of the stored ones among ``rows``, in one request."""
        payloads = {record_id: point_payload(key, payload, fp) for record_id, key, payload, fp in rows}
        with self._call("update payloads") as client:
            stored = client.retrieve(self.collection_name, list(payloads), with_payload=False, with_vectors=False)
            operations = [
                models.OverwritePayloadOperation(
                    overwrite_payload=models.SetPayload(payload=payloads[str(point.id)], points=[point.id])
                )
                for point in stored
            ]
            if operations:
                client.batch_update_points(self.collection_name, operations, wait=True)
        return len(operations)

    # -- reads ------------------------------------------------------------------------------
    def _scroll(self, limit: int, *, with_payload: Any, with_vectors: bool) -> Iterator[list[Any]]:
        """Every stored point, a page of ``limit`` at a time."""
        offset: Any = None
        while True:
            with self._call("scroll") as client:
                points, offset = client.scroll(
                    self.collection_name,
                    limit=limit,
                    offset=offset,
                    with_payload=with_payload,
                    with_vectors=with_vectors,
                )
            yield points
            if offset is None:
                return

    def _scan_fingerprints(self) -> Iterator[tuple[str, str]]:
        for points in self._scroll(SCROLL_PAGE, with_payload=[KEY_FIELD, FINGERPRINT_FIELD], with_vectors=False):
            yield from map(point_fingerprint, points)

    def _lookup_fingerprints(self, ids: list[str]) -> list[tuple[str, str]]:
        with self._call("read fingerprints") as client:
            points = client.retrieve(
                self.collection_name, ids, with_payload=[KEY_FIELD, FINGERPRINT_FIELD], with_vectors=False
            )
        return [point_fingerprint(point) for point in points]

    def _vectors_read_back(self) -> bool | list[str]:
        """The vectors a scan reads (``with_vectors``): all of them, unless a kind keeps one it derives."""
        return True

    def _scan_records(self, batch_size: int) -> Iterator[Record]:
        spec = self._require_spec()
        for points in self._scroll(batch_size, with_payload=True, with_vectors=self._vectors_read_back()):
            yield from (point_record(spec, point) for point in points)

    def _count(self, filter: Node | None) -> int:
        with self._call("count") as client:
            return client.count(self.collection_name, count_filter=to_filter(filter), exact=True).count

    def _query(self, spec: Any, **request: Any) -> list[Hit]:
        """One ``query_points`` call (payloads, no vectors) as hits scored per ``spec``'s distance."""
        with self._call("search") as client:
            response = client.query_points(self.collection_name, with_payload=True, with_vectors=False, **request)
        return [to_hit(point, spec) for point in response.points]


def _request_slices(sizes: list[int]) -> Iterator[tuple[int, int]]:
    """Consecutive (start, stop) slices holding at most MAX_REQUEST_VALUES values (at least one row)."""
    start, total = 0, 0
    for i, size in enumerate(sizes):
        if i > start and total + size > MAX_REQUEST_VALUES:
            yield start, i
            start, total = i, 0
        total += size
    if start < len(sizes):
        yield start, len(sizes)

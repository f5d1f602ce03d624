"""``qdrant+edge://<folder>/<collection>``: Qdrant's own engine in-process (qdrant-edge-py).

One collection is one ``EdgeShard`` in the folder ``<folder>/<collection>``, with the same
layout as the server path (:mod:`lfm_retrieval_qdrant.layout`): point ids, the
``_lfm_key`` / ``_lfm_fingerprint`` / ``_lfm_payload`` payload, an unnamed dense vector, an
unnamed MaxSim multivector with HNSW off (``m=0``), or the named ``"dense"`` + ``"colbert"``
vectors of a hybrid collection. The engine has no collection metadata, so the spec is
recorded in ``lfm_retrieval.json`` beside the shard (written before the shard is created);
dimension, distance, datatype and kind are read back from the shard's own
``edge_config.json``.

**When HNSW is built.** The engine searches new points by brute force until ``optimize()``
builds the HNSW index of their segment; building costs seconds to minutes (measured: 36 s
for 2,000 1024-d points with a multivector on two loaded cores), a brute-force scan of a
few thousand points a few milliseconds. So the store builds it (1) when a ``bulk_load()``
block ends (a catalog job or a copy: once, after all the writes), and (2) after an upsert
that brings the points written since the last build to ``optimize_after`` (default
10,000): a scan of that many 1024-d vectors is where brute force starts to cost more per
query than an index is worth keeping stale. ``optimize()`` builds it on demand.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import qdrant_edge as qe

from lfm_retrieval.stores import (
    AnySpec,
    CollectionSpec,
    DenseStore,
    Hit,
    HybridSpec,
    HybridStore,
    MultiVectorStore,
    Record,
    Store,
    spec_from_metadata,
)
from lfm_retrieval.stores.filters import Node
from lfm_retrieval_qdrant import edge_shards
from lfm_retrieval_qdrant.collection import SCROLL_PAGE
from lfm_retrieval_qdrant.edge_filters import to_filter
from lfm_retrieval_qdrant.first_stage import FIRST_STAGE_DEFAULT, FirstStageMixin
from lfm_retrieval_qdrant.layout import (
    COLBERT_VECTOR,
    DENSE_VECTOR,
    FINGERPRINT_FIELD,
    KEY_FIELD,
    METADATA_KEY,
    MUVERA_VECTOR,
    PAYLOAD_SCHEMA_NAMES,
    VectorSettings,
    check_payload_indexes,
    collection_metadata,
    engine_vectors,
    field_path,
    first_stage_from_vectors,
    point_fingerprint,
    point_payload,
    point_record,
    query_values,
    spec_from_vectors,
    stored_tokens,
    stored_vectors,
    to_hit,
    unrecorded_collection,
    vector_specs,
)
from lfm_retrieval_qdrant.uri import QdrantTarget, parse_uri

SPEC_FILE = "lfm_retrieval.json"
ENGINE_CONFIG = "edge_config.json"
#: Points written since the last HNSW build after which an upsert builds it (see the module doc).
DEFAULT_OPTIMIZE_AFTER = 10_000
DISTANCES = {"cosine": qe.Distance.Cosine, "dot": qe.Distance.Dot, "euclid": qe.Distance.Euclid}
PAYLOAD_SCHEMAS = {name: getattr(qe.PayloadSchemaType, name.capitalize()) for name in PAYLOAD_SCHEMA_NAMES}


def vector_params(spec: CollectionSpec) -> Any:
    """The engine's vector for ``spec``: dense (HNSW) or a MaxSim multivector with HNSW off (``m=0``)."""
    datatype = qe.VectorStorageDatatype.Float16 if spec.vector_type == "float16" else None
    if spec.kind == "multivector":
        return qe.EdgeVectorParams(
            size=spec.dimension,
            distance=DISTANCES[spec.distance],
            datatype=datatype,
            multivector_config=qe.MultiVectorConfig(qe.MultiVectorComparator.MaxSim),
            hnsw_config=qe.HnswIndexConfig(m=0, ef_construct=100, full_scan_threshold=10_000),
        )
    return qe.EdgeVectorParams(size=spec.dimension, distance=DISTANCES[spec.distance], datatype=datatype)


def edge_config(
    spec: AnySpec, tuning: Mapping[str, Any] | None = None, first_stage: CollectionSpec | None = None
) -> Any:
    """The shard's config: ``spec``'s vectors (``"colbert"`` + ``"muvera"`` for a multivector spec with
    a first stage, whose MUVERA vector ``first_stage`` specifies), plus the engine settings in
    ``tuning`` (``optimizers``, ``hnsw_config``) when a store was opened with them."""
    vectors = engine_vectors({name: vector_params(s) for name, s in vector_specs(spec, first_stage).items()})
    return qe.EdgeConfig(vectors=vectors, **(tuning or {}))


def _tuning(indexing_threshold_kb: int | None, full_scan_threshold_kb: int | None) -> dict[str, Any]:
    tuning: dict[str, Any] = {}
    if indexing_threshold_kb is not None:
        tuning["optimizers"] = qe.EdgeOptimizersConfig(indexing_threshold=indexing_threshold_kb)
    if full_scan_threshold_kb is not None:
        tuning["hnsw_config"] = qe.HnswIndexConfig(m=16, ef_construct=100, full_scan_threshold=full_scan_threshold_kb)
    return tuning


def engine_vector_settings(engine_config: Mapping[str, Any]) -> dict[str, VectorSettings]:
    """The vectors of a shard's ``edge_config.json`` by name (the unnamed one is ``""`` there too)."""
    return {
        name: VectorSettings(
            size=params.get("size"),
            distance=str(params.get("distance", "")).lower(),
            vector_type=str(params.get("datatype") or "float32").lower(),
            multivector=bool(params.get("multivector_config")),
        )
        for name, params in (engine_config.get("vectors") or {}).items()
    }


def spec_of(engine_config: Mapping[str, Any], recorded: Mapping[str, Any]) -> dict[str, Any]:
    """The spec a shard holds: kind and vectors from the engine's config, the model from ours."""
    return spec_from_vectors(engine_vector_settings(engine_config), recorded)


class QdrantEdgeCollection(Store):
    """One collection in Qdrant's engine in-process (the base of the three ``qdrant+edge`` kinds).

    Options: ``payload_indexes`` (``{"field": "keyword" | "integer" | "float" | "bool" |
    ...}``, created by ``ensure_collection``), ``hnsw_ef`` and ``exact`` (search
    parameters), ``optimize_after`` (see the module doc), ``indexing_threshold_kb`` (a segment
    smaller than this gets no HNSW; Qdrant's default is 10,000 KB, about 2,500 1024-d vectors)
    and ``full_scan_threshold_kb`` (searches of smaller segments scan them exactly; default
    10,000 KB): both are kept in the shard from then on. One process per folder: a folder
    another process holds is a StoreUnavailableError naming it.
    """

    def __init__(
        self,
        target: QdrantTarget | str,
        *,
        payload_indexes: Mapping[str, str] | None = None,
        hnsw_ef: int | None = None,
        exact: bool = False,
        optimize_after: int = DEFAULT_OPTIMIZE_AFTER,
        indexing_threshold_kb: int | None = None,
        full_scan_threshold_kb: int | None = None,
    ) -> None:
        self.target = parse_uri(target) if isinstance(target, str) else target
        self.uri = self.target.uri
        self.path = os.path.join(self.target.folder or "", self.target.collection)
        self.payload_indexes = check_payload_indexes(payload_indexes or {}, PAYLOAD_SCHEMAS)
        tuned = exact or hnsw_ef is not None
        self._search_params = qe.SearchParams(hnsw_ef=hnsw_ef, exact=exact) if tuned else None
        self.optimize_after = optimize_after
        self._tuning = _tuning(indexing_threshold_kb, full_scan_threshold_kb)
        self._shared: edge_shards.SharedShard | None = None
        self._closed = False
        self._attach()  # holds the folder from now on: another process gets a clear error

    def _attach(self) -> None:
        """Open the shard if the collection exists (another store of this process may have made it)."""
        if Path(self.path, ENGINE_CONFIG).exists():
            config = config_from_recorded(self.path, self._tuning) if self._tuning else None
            self._shared = edge_shards.acquire(self.path, self.uri, config, create=False)
        elif Path(self.path, SPEC_FILE).exists():  # killed between recording the spec and creating the shard
            config = config_from_recorded(self.path, self._tuning)
            self._shared = edge_shards.acquire(self.path, self.uri, config, create=True)

    # -- plumbing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def _call(self) -> Iterator[Any]:
        """The shard, under its lock."""
        if self._closed:
            raise RuntimeError(f"store {self.uri!r} is closed")
        if self._shared is None:
            self._attach()
        if self._shared is None:
            raise LookupError(f"collection {self.uri!r} does not exist; call ensure_collection(spec) first")
        with self._shared.lock:
            yield self._shared.shard

    @property
    def shard(self) -> Any:
        """The underlying ``qdrant_edge.EdgeShard`` (shared with other stores on the same folder)."""
        with self._call() as shard:
            return shard

    def close(self) -> None:
        """Release the shard (it closes, flushed, with its last store)."""
        shared, self._shared, self._closed = self._shared, None, True
        if shared is not None:
            edge_shards.release(shared.path)

    # -- schema -----------------------------------------------------------------------------
    def ensure_collection(self, spec: AnySpec) -> None:
        """Create the collection for ``spec`` or check the existing one; then add payload indexes."""
        super().ensure_collection(spec)
        with self._call() as shard:
            for field, schema in self.payload_indexes.items():
                shard.update(qe.UpdateOperation.create_field_index(field_path(field), schema))

    def _read_spec(self) -> dict[str, Any] | None:
        engine = Path(self.path, ENGINE_CONFIG)
        if not engine.exists():
            return None
        recorded_file = Path(self.path, SPEC_FILE)
        engine_config = json.loads(engine.read_text())
        if not recorded_file.exists():
            raise unrecorded_collection(self.uri, spec_of(engine_config, {}))
        return spec_of(engine_config, json.loads(recorded_file.read_text())[METADATA_KEY])

    def _layout(self, spec: AnySpec) -> tuple[dict[str, Any], Any]:
        """(recorded metadata, engine config) of a new collection for ``spec``."""
        return collection_metadata(spec), edge_config(spec, self._tuning)

    def _create(self, spec: AnySpec) -> None:
        if self._closed:
            raise RuntimeError(f"store {self.uri!r} is closed")
        metadata, config = self._layout(spec)
        os.makedirs(self.path, exist_ok=True)
        recorded = Path(self.path, SPEC_FILE)
        partial = recorded.with_suffix(".tmp")
        partial.write_text(json.dumps(metadata))
        os.replace(partial, recorded)  # the spec first: a shard never exists without one
        self._shared = edge_shards.acquire(self.path, self.uri, config, create=True)

    # -- HNSW -------------------------------------------------------------------------------
    def optimize(self) -> bool:
        """Build the HNSW index of what was written (blocking); True if anything was rebuilt."""
        with self._call() as shard:
            assert self._shared is not None
            self._shared.pending = 0
            return bool(shard.optimize())

    @contextlib.contextmanager
    def bulk_load(self) -> Iterator[Store]:
        """Many upserts, then one HNSW build at the end (none in between)."""
        self._require_spec()
        assert self._shared is not None
        shared = self._shared
        with shared.lock:
            shared.bulk_depth += 1
        try:
            yield self
        finally:
            with shared.lock:
                shared.bulk_depth -= 1
                last = shared.bulk_depth == 0 and shared.pending > 0
            if last and not self._closed:
                self.optimize()

    # -- writes -----------------------------------------------------------------------------
    def _point_vectors(self, vectors: Any) -> Any:
        """One point's vectors in this kind's layout."""
        raise NotImplementedError

    def _batch_vectors(self, rows: list[tuple[str, Any, Record]]) -> list[Any]:
        """Each row's point vectors (a kind that encodes a batch at once overrides this)."""
        return [self._point_vectors(vectors) for _, vectors, _ in rows]

    def _upsert(self, rows: list[tuple[str, Any, Record]]) -> int:
        payloads = [
            point_payload(record.key, record.payload, record.fingerprint) for _, _, record in rows
        ]  # every payload is checked before anything is written
        points = [
            qe.Point(record_id, vectors, payload)
            for (record_id, _, _), vectors, payload in zip(rows, self._batch_vectors(rows), payloads, strict=True)
        ]
        with self._call() as shard:
            shard.update(qe.UpdateOperation.upsert_points(points))  # one WAL entry: all or nothing
            assert self._shared is not None
            self._shared.pending += len(rows)
            due = self._shared.bulk_depth == 0 and self._shared.pending >= self.optimize_after
        if due:
            self.optimize()
        return len(rows)

    def _delete(self, ids: list[str]) -> None:
        with self._call() as shard:
            shard.update(qe.UpdateOperation.delete_points(list(ids)))

    def _update_payloads(self, rows: list[tuple[str, str, dict[str, Any], str]]) -> int:
        payloads = {record_id: point_payload(key, payload, fp) for record_id, key, payload, fp in rows}
        with self._call() as shard:
            stored = shard.retrieve(list(payloads), with_payload=False, with_vector=False)
            for point in stored:
                shard.update(qe.UpdateOperation.overwrite_payload([point.id], payloads[str(point.id)]))
        return len(stored)

    # -- reads ------------------------------------------------------------------------------
    def _scroll(self, limit: int, **request: Any) -> Iterator[list[Any]]:
        offset: Any = None
        while True:
            with self._call() as shard:
                points, offset = shard.scroll(qe.ScrollRequest(offset=offset, limit=limit, **request))
            yield points
            if offset is None:
                return

    def _scan_fingerprints(self) -> Iterator[tuple[str, str]]:
        for points in self._scroll(SCROLL_PAGE, with_payload=[KEY_FIELD, FINGERPRINT_FIELD], with_vector=False):
            yield from map(point_fingerprint, points)

    def _vectors_read_back(self) -> bool | list[str]:
        """The vectors a scan reads: all of them, unless a kind keeps one it derives."""
        return True

    def _scan_records(self, batch_size: int) -> Iterator[Record]:
        spec = self._require_spec()
        for points in self._scroll(batch_size, with_payload=True, with_vector=self._vectors_read_back()):
            yield from (point_record(spec, point) for point in points)

    def _count(self, filter: Node | None) -> int:
        with self._call() as shard:
            return int(shard.count(qe.CountRequest(exact=True, filter=to_filter(filter))))

    def _query(self, spec: CollectionSpec, request: Any) -> list[Hit]:
        with self._call() as shard:
            points = shard.query(request)
        return [to_hit(point, spec) for point in points]

    def _nearest(self, query: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        """The ``k`` nearest points to a dense vector or (MaxSim) a token matrix, filtered."""
        spec = self._require_spec()
        request = qe.QueryRequest(
            limit=k,
            query=qe.Query.Nearest(query_values(query, spec)),
            filter=to_filter(filter),
            params=self._search_params,
            with_payload=True,
        )
        return self._query(spec, request)


def _recorded(path: str) -> dict[str, Any]:
    return json.loads(Path(path, SPEC_FILE).read_text())[METADATA_KEY]


def spec_from_recorded(path: str) -> AnySpec:
    recorded = _recorded(path)
    return spec_from_metadata({k: v for k, v in recorded.items() if k not in ("layout", "first_stage")})


def config_from_recorded(path: str, tuning: Mapping[str, Any]) -> Any:
    """The engine config of the collection recorded in ``path`` (first stage included), with ``tuning``."""
    spec = spec_from_recorded(path)
    recorded = _recorded(path).get("first_stage")
    stage = None
    if recorded and isinstance(spec, CollectionSpec):
        from lfm_retrieval.muvera import Muvera

        size = Muvera.from_config(recorded["muvera"]).embedding_size
        stage = CollectionSpec(size, "dot", spec.vector_type)
    return edge_config(spec, tuning, stage)


class QdrantEdgeDenseStore(QdrantEdgeCollection, DenseStore):
    """One encoder's vectors in Qdrant's engine in-process (one unnamed vector, HNSW once built)."""

    def _point_vectors(self, vectors: np.ndarray) -> list[float]:
        return stored_vectors([vectors], self._require_spec())[0]

    def _search(self, vector: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        return self._nearest(vector, k, filter)


class QdrantEdgeMultiVectorStore(FirstStageMixin, QdrantEdgeCollection, MultiVectorStore):
    """ColBERT token matrices in Qdrant's engine in-process, searched by MaxSim (HNSW off, ``m=0``).

    With a MUVERA first stage (:mod:`lfm_retrieval_qdrant.first_stage`; on by default for a new
    collection, ``first_stage="none"`` to go without), one engine query: the MUVERA top-``prefetch``
    (HNSW once built) reordered by exact MaxSim; without, every matching record is scored exactly.
    """

    def _default_first_stage(self) -> bool:
        return FIRST_STAGE_DEFAULT["edge"]

    def _stored_first_stage(self) -> tuple[int | None, dict[str, Any] | None] | None:
        engine = Path(self.path, ENGINE_CONFIG)
        if not engine.exists():
            return None
        recorded = _recorded(self.path) if Path(self.path, SPEC_FILE).exists() else {}
        return first_stage_from_vectors(engine_vector_settings(json.loads(engine.read_text())), recorded)

    def _layout(self, spec: AnySpec) -> tuple[dict[str, Any], Any]:
        stage = self._new_first_stage(spec)
        if stage is None:
            return super()._layout(spec)
        return collection_metadata(spec, stage.metadata()), edge_config(spec, self._tuning, stage.spec)

    def _vectors_read_back(self) -> bool | list[str]:
        return True if self._first_stage() is None else [COLBERT_VECTOR]

    def _batch_vectors(self, rows: list[tuple[str, np.ndarray, Record]]) -> list[Any]:
        matrices = [matrix for _, matrix, _ in rows]
        tokens = stored_tokens(matrices, self._require_spec())
        stage = self._first_stage()
        if stage is None:
            return tokens
        encodings = stage.document_vectors(matrices).tolist()
        return [{COLBERT_VECTOR: t, MUVERA_VECTOR: e} for t, e in zip(tokens, encodings, strict=True)]

    def _search(self, token_vectors: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        stage = self._first_stage()
        if stage is None:
            return self._nearest(token_vectors, k, filter)
        spec = self._require_spec()
        engine_filter = to_filter(filter)
        first = qe.Prefetch(
            limit=stage.limit(k),
            query=qe.Query.Nearest(stage.query_vector(token_vectors), using=MUVERA_VECTOR),
            filter=engine_filter,
            params=self._search_params,
        )
        request = qe.QueryRequest(
            limit=k,
            prefetches=[first],
            query=qe.Query.Nearest(query_values(token_vectors, spec), using=COLBERT_VECTOR),
            filter=engine_filter,
            with_payload=True,
        )
        return self._query(spec, request)


class QdrantEdgeHybridStore(QdrantEdgeCollection, HybridStore):
    """A dense vector (``"dense"``, HNSW) and ColBERT token vectors (``"colbert"``, MaxSim) per record,
    searched in one engine query: the dense top-``prefetch`` reordered by MaxSim (filter on both)."""

    def _point_vectors(self, vectors: tuple[np.ndarray, np.ndarray]) -> dict[str, Any]:
        spec: HybridSpec = self._require_spec()
        return {
            DENSE_VECTOR: stored_vectors([vectors[0]], spec.dense)[0],
            COLBERT_VECTOR: stored_tokens([vectors[1]], spec.multivector)[0],
        }

    def _search(
        self, vector: np.ndarray, token_vectors: np.ndarray, k: int, prefetch: int, filter: Node | None
    ) -> list[Hit]:
        spec: HybridSpec = self._require_spec()
        engine_filter = to_filter(filter)
        first_stage = qe.Prefetch(
            limit=prefetch,
            query=qe.Query.Nearest(query_values(vector, spec.dense), using=DENSE_VECTOR),
            filter=engine_filter,
            params=self._search_params,
        )
        request = qe.QueryRequest(
            limit=k,
            prefetches=[first_stage],
            query=qe.Query.Nearest(query_values(token_vectors, spec.multivector), using=COLBERT_VECTOR),
            filter=engine_filter,
            with_payload=True,
        )
        return self._query(spec.multivector, request)


#: The store class of each collection kind.
EDGE_STORE_CLASSES: dict[str, type[QdrantEdgeCollection]] = {
    "dense": QdrantEdgeDenseStore,
    "multivector": QdrantEdgeMultiVectorStore,
    "hybrid": QdrantEdgeHybridStore,
}

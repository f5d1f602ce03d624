"""``MilvusCollection``: what every Milvus store kind shares (connection, schema check, writes by
raw row, deletes, counts, fingerprints, scans, and the filtered vector search of the first stage)."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from pymilvus import MilvusClient

from lfm_retrieval.stores.base import Store
from lfm_retrieval.stores.filters import Node, matches
from lfm_retrieval.stores.records import AnySpec, CollectionSpec, HybridSpec, Record
from lfm_retrieval_milvus.connection import UnsupportedSpecError, connection_errors
from lfm_retrieval_milvus.filters import Never, to_filter
from lfm_retrieval_milvus.layout import (
    FINGERPRINT,
    ID,
    KEY,
    MAX_DIMENSION,
    MAX_TOP_K,
    METADATA,
    TOKENS,
    VECTOR,
    read_spec,
)
from lfm_retrieval_milvus.rows import encode_metadata, varchar
from lfm_retrieval_milvus.uri import MilvusTarget

T = TypeVar("T")
# Counts, scans and reads of stored vectors are Strong: exact, whoever wrote last. A Strong
# read waits for the server's next time tick (~200 ms on a default server), so searches
# use Session by default: what this process wrote is visible at once (pymilvus keeps the
# timestamp of its last write per collection), other processes' writes within a tick.
STRONG = "Strong"
CONSISTENCY_LEVELS = ("Strong", "Session", "Bounded", "Eventually")
REQUEST_BYTES = 16 * 2**20  # rows per upsert request are capped near this many bytes
IDS_PER_REQUEST = 1000


class MilvusCollection(Store):
    """A Milvus collection (server, or a Milvus Lite file) of one kind; subclasses add the search.

    ``timeout`` bounds connecting (an unreachable server is a StoreUnavailableError naming
    the URI within it); ``request_timeout`` bounds each later call, retries included.
    ``consistency`` is the level searches ask for ("Session" by default; "Strong" makes
    every search wait for writes of other processes too).
    """

    def __init__(
        self,
        target: MilvusTarget,
        *,
        timeout: float = 10.0,
        request_timeout: float = 60.0,
        token: str = "",
        hnsw_m: int = 16,
        ef_construction: int = 200,
        ef_search: int = 128,
        consistency: str = "Session",
    ) -> None:
        if consistency not in CONSISTENCY_LEVELS:
            raise ValueError(f"consistency must be one of {CONSISTENCY_LEVELS}, not {consistency!r}")
        self.uri = target.display_uri
        self.target = target
        self.shared = not target.lite  # a Milvus server; a Lite file is this process's alone
        self.collection = target.collection
        self._request_timeout = request_timeout
        self._index = {"m": hnsw_m, "ef_construction": ef_construction}
        self._ef_search = ef_search
        self._consistency = consistency
        # Lite compares with Python's == (True == 1): filters there select a superset.
        self._exact_filters = not target.lite
        self._loaded = False
        self._description: dict[str, Any] = {}
        self._client: MilvusClient | None = self._connect(timeout, token)

    # -- connection -------------------------------------------------------------------------
    def _connect(self, timeout: float, token: str) -> MilvusClient:
        if self.target.lite:
            Path(self.target.client_uri).parent.mkdir(parents=True, exist_ok=True)
        operation = "open the file (one process at a time per Milvus Lite file)" if self.target.lite else "connect"
        with connection_errors(self.target, operation):
            return MilvusClient(
                uri=self.target.client_uri,
                user=self.target.user,
                password=self.target.password,
                token=token,
                db_name=self.target.db_name,
                timeout=timeout,
            )

    @property
    def client(self) -> MilvusClient:
        """The open ``MilvusClient`` (for what the protocol does not cover)."""
        if self._client is None:
            raise RuntimeError(f"store {self.uri!r} is closed")
        return self._client

    def _call(self, operation: str, method: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        with connection_errors(self.target, operation):
            return method(*args, timeout=self._request_timeout, **kwargs)

    def close(self) -> None:
        """Close the client (the connection is shared with other clients of the same server)."""
        if self._client is not None:
            client, self._client = self._client, None
            with connection_errors(self.target, "close"):
                client.close()

    def server_version(self) -> str:
        """The engine's version string (e.g. ``v2.3.5-lite``, ``milvus_lite-3.2.2``)."""
        return self._call("read the server version", self.client.get_server_version)

    # -- schema -----------------------------------------------------------------------------
    def _read_spec(self) -> dict[str, Any] | None:
        if not self._call("check the collection", self.client.has_collection, self.collection):
            return None
        description = self._call("describe the collection", self.client.describe_collection, self.collection)
        spec = read_spec(description, f"collection {self.uri!r}")
        self._description = description
        self._ensure_loaded()
        return spec

    def _ensure_loaded(self) -> None:
        # Milvus Lite (and a restarted server) may hold the collection released.
        if self._loaded:
            return
        state = self._call("check the load state", self.client.get_load_state, self.collection)
        if getattr(state.get("state"), "name", "") != "Loaded":
            self._call("load the collection", self.client.load_collection, self.collection)
        self._loaded = True

    def _create_collection(self, schema: Any, index_params: Any, properties: dict[str, str]) -> None:
        self._call(
            "create the collection",
            self.client.create_collection,
            self.collection,
            schema=schema,
            index_params=index_params,
            consistency_level=STRONG,  # the default of other clients reading this collection
            properties=properties,
        )
        self._loaded = True

    def _check_dense_supported(self, spec: CollectionSpec) -> None:
        """Refuse a dense vector this engine cannot hold or search right."""
        if spec.dimension > MAX_DIMENSION:
            raise UnsupportedSpecError(f"{self.uri}: Milvus vectors have at most {MAX_DIMENSION} dimensions")
        if spec.vector_type != "float16":
            return
        if self.target.lite:
            raise UnsupportedSpecError(
                f"{self.uri}: Milvus Lite has no float16 vectors; use vector_type='float32' or a Milvus server"
            )
        version = self.server_version()
        found = re.search(r"(\d+)\.(\d+)", version)
        if not found or (int(found[1]), int(found[2])) < (2, 4):
            raise UnsupportedSpecError(
                f"{self.uri}: float16 vectors need Milvus 2.4 or newer, this server is {version!r} "
                "(2.3 servers accept FLOAT16_VECTOR fields but search them wrongly); use vector_type='float32'"
            )

    # -- writes -----------------------------------------------------------------------------
    def _write_rows(self, milvus_rows: list[dict[str, Any]]) -> None:
        """Upsert Milvus rows in requests of about REQUEST_BYTES (each request is atomic)."""
        chunk: list[dict[str, Any]] = []
        size = 0
        for row in milvus_rows:
            row_size = _row_bytes(row)
            if chunk and size + row_size > REQUEST_BYTES:
                self._call("upsert records", self.client.upsert, self.collection, chunk)
                chunk, size = [], 0
            chunk.append(row)
            size += row_size
        if chunk:
            self._call("upsert records", self.client.upsert, self.collection, chunk)

    def _delete(self, ids: list[str]) -> None:
        for start in range(0, len(ids), IDS_PER_REQUEST):
            self._call("delete records", self.client.delete, self.collection, ids=ids[start : start + IDS_PER_REQUEST])
        if not self.target.lite:
            # A 2.3 server returns no timestamp for a delete, so Session reads would not wait
            # for it: one Strong read now waits until the server has applied it, for every reader.
            self._call(
                "confirm the delete",
                self.client.query,
                self.collection,
                filter="",
                output_fields=["count(*)"],
                consistency_level=STRONG,
            )

    def _update_payloads(self, rows: list[tuple[str, str, dict[str, Any], str]]) -> int:
        self._require_spec()
        metadata = {}
        for record_id, key, payload, fingerprint in rows:  # refuse a bad payload before anything is written
            metadata[record_id] = encode_metadata(Record(key, [], payload, fingerprint))
            varchar(Record(key, [], payload, fingerprint), "fingerprint", fingerprint)
        vector_fields = [VECTOR] + ([TOKENS] if self.kind != "dense" else [])
        updated = 0
        for start in range(0, len(rows), IDS_PER_REQUEST):
            chunk = rows[start : start + IDS_PER_REQUEST]
            stored = self._call(
                "read stored vectors",
                self.client.get,
                self.collection,
                ids=[row[0] for row in chunk],
                output_fields=vector_fields,
                consistency_level=STRONG,
            )
            kept = {item[ID]: item for item in stored}
            milvus_rows = [
                {
                    ID: rid,
                    KEY: key,
                    FINGERPRINT: fingerprint,
                    **{name: self._stored_value(name, kept[rid][name]) for name in vector_fields},
                    METADATA: metadata[rid],
                }
                for rid, key, _, fingerprint in chunk
                if rid in kept
            ]
            if milvus_rows:
                self._write_rows(milvus_rows)
            updated += len(milvus_rows)
        return updated

    def _stored_value(self, name: str, value: Any) -> Any:
        """A field's value as ``get`` returned it, in the form ``upsert`` takes back."""
        if name == TOKENS:
            return list(value)
        return _vector(value, self._vector_spec_type())

    def _vector_spec_type(self) -> str:
        spec: AnySpec = self._require_spec()
        if isinstance(spec, HybridSpec):
            return spec.dense.vector_type
        return spec.vector_type if spec.kind == "dense" else "float32"

    # -- reads ------------------------------------------------------------------------------
    def _count(self, filter: Node | None) -> int:
        expression = to_filter(filter, METADATA, in_lists=not self.target.lite)
        if isinstance(expression, Never):
            return 0
        if filter is None or self._exact_filters:
            result = self._call(
                "count records",
                self.client.query,
                self.collection,
                filter=expression or "",
                output_fields=["count(*)"],
                consistency_level=STRONG,
            )
            return int(result[0]["count(*)"])
        return sum(matches(filter, row[METADATA]) for row in self._iterate(expression or "", [METADATA]))

    def _scan_fingerprints(self) -> Iterator[tuple[str, str]]:
        for row in self._iterate("", [KEY, FINGERPRINT]):
            yield row[KEY], row[FINGERPRINT]

    def _lookup_fingerprints(self, ids: list[str]) -> Iterator[tuple[str, str]]:
        for start in range(0, len(ids), IDS_PER_REQUEST):
            found = self._call(
                "read fingerprints",
                self.client.get,
                self.collection,
                ids=ids[start : start + IDS_PER_REQUEST],
                output_fields=[KEY, FINGERPRINT],
                consistency_level=STRONG,
            )
            yield from ((row[KEY], row[FINGERPRINT]) for row in found)

    def _iterate(self, expression: str, fields: list[str], batch_size: int = 1000) -> Iterator[dict[str, Any]]:
        """Every row matching ``expression`` (a query iterator: no 16,384-row window)."""
        if self.target.lite:  # Lite has no result window, and no timestamp service for iterators
            yield from self._call(
                "scan records",
                self.client.query,
                self.collection,
                filter=expression or f'{ID} != ""',
                output_fields=fields,
                consistency_level=STRONG,
            )
            return
        iterator = self._call(
            "scan records",
            self.client.query_iterator,
            self.collection,
            batch_size=batch_size,
            filter=expression,
            output_fields=fields,
            consistency_level=STRONG,
        )
        try:
            while True:
                with connection_errors(self.target, "scan records"):
                    batch = iterator.next()
                if not batch:
                    return
                yield from batch
        finally:
            iterator.close()

    def _vector_search(
        self, query: Any, limit: int, filter: Node | None, metric: str, output_fields: list[str]
    ) -> list[dict[str, Any]]:
        """The ``limit`` nearest rows to ``query`` that match ``filter`` (Milvus' hits, best first)."""
        if limit > MAX_TOP_K:
            raise ValueError(f"k={limit}: Milvus returns at most {MAX_TOP_K} hits per search")
        expression = to_filter(filter, METADATA, in_lists=not self.target.lite)
        if isinstance(expression, Never):
            return []
        fields = list(dict.fromkeys([KEY, METADATA, *output_fields]))
        wanted = limit
        while True:
            hits = self._search_once(query, limit, expression or "", metric, fields)
            if filter is None or self._exact_filters:
                return hits[:wanted]
            kept = [hit for hit in hits if matches(filter, hit["entity"][METADATA] or {})]
            if len(kept) >= wanted or len(hits) < limit or limit >= MAX_TOP_K:
                return kept[:wanted]
            limit = min(limit * 4, MAX_TOP_K)  # Lite: the expression kept too many; widen and refilter

    def _search_once(self, query: Any, limit: int, expression: str, metric: str, fields: list[str]) -> list[Any]:
        result = self._call(
            "search",
            self.client.search,
            self.collection,
            data=[query],
            anns_field=VECTOR,
            limit=limit,
            filter=expression,
            output_fields=fields,
            search_params={"metric_type": metric, "params": {"ef": max(limit, self._ef_search)}},
            consistency_level=self._consistency,
        )
        return list(result[0])


def _vector(value: Any, vector_type: str) -> np.ndarray:
    """A vector as ``get`` returns it: floats, or float16 bytes (alone or in a one-item list)."""
    if isinstance(value, list) and value and isinstance(value[0], (bytes, bytearray)):
        value = b"".join(value)
    if isinstance(value, (bytes, bytearray)):
        return np.frombuffer(value, dtype=np.float16).astype(np.float32 if vector_type == "float32" else np.float16)
    array = np.asarray(value, dtype=np.float32)
    return array.astype(np.float16) if vector_type == "float16" else array


def _row_bytes(row: dict[str, Any]) -> int:
    """About how many bytes a Milvus row takes in a request."""
    size = 64
    for value in row.values():
        if isinstance(value, np.ndarray):
            size += value.nbytes
        elif isinstance(value, str):
            size += len(value)
        elif isinstance(value, list):
            size += sum(len(item) if isinstance(item, str) else 8 for item in value)
    return size

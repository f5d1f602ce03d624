"""The Ray engine's stages, run in Ray tasks and actors: read + prepare, diff, encode, write.

Rows travel as Arrow tables: ``position``, ``key``, ``text``, ``payload`` (pickled, so
any value a source gives reaches the store unchanged), ``error``, and per target ``fp<t>``
(its fingerprint) and ``act<t>`` (unchanged / payload / encode); the encoders add
``vec<e>`` (float32 bytes) and, for ColBERT, ``tok<e>`` (the number of token vectors).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
from ray.data.block import BlockAccessor, BlockMetadata
from ray.data.datasource import Datasink, Datasource, ReadTask

from lfm_retrieval.catalog.prepare import Identity, Preparer, decide, fingerprint
from lfm_retrieval.catalog.sources import SourceRow, item_row, read_file
from lfm_retrieval.catalog.summary import Summary
from lfm_retrieval.catalog.targets import write
from lfm_retrieval.encoders import EncoderSpec, build_encoder
from lfm_retrieval.errors import BadRecordError, LFMRetrievalError, StoreUnavailableError
from lfm_retrieval.runtimes.choose import runtime_kind
from lfm_retrieval.stores import Record, Store, open_store


@dataclass(frozen=True)
class Piece:
    """One read task's share: a file (or some row groups of a Parquet file), or a slice of items."""

    name: str
    kind: str = "items"  # "jsonl" / "csv" / "parquet" / "items"
    path: str = ""
    filesystem: Any = None  # a pyarrow FileSystem
    row_groups: tuple[int, ...] | None = None
    items: tuple[Any, ...] = ()
    first: int = 0

    def rows_estimate(self) -> int:
        """Rows in this piece: exact for items and Parquet, lines of a local text file, else bytes / 200."""
        if self.kind == "items":
            return len(self.items)
        if self.kind == "parquet":
            import pyarrow.parquet as pq

            with self.filesystem.open_input_file(self.path) as handle:
                meta = pq.ParquetFile(handle).metadata
            return sum(meta.row_group(g).num_rows for g in self.row_groups or ())
        if self.filesystem.type_name == "local":
            with open(self.path, "rb") as handle:
                return sum(chunk.count(b"\n") for chunk in iter(lambda: handle.read(1 << 20), b""))
        return self.filesystem.get_file_info(self.path).size // 200

    def rows(self) -> Iterator[SourceRow]:
        if self.kind == "items":
            for offset, item in enumerate(self.items):
                yield item_row(self.first + offset, item)
            return
        with self.filesystem.open_input_file(self.path) as handle:
            groups = list(self.row_groups) if self.row_groups is not None else None
            yield from read_file(handle, self.name, self.kind, groups)


@dataclass(frozen=True)
class Prepare:
    """Turns source rows into prepared, fingerprinted rows (one Arrow block per ``rows_per_block``)."""

    preparer: Preparer
    identities: tuple[Identity, ...]
    rows_per_block: int = 1024

    def blocks(self, rows: Iterable[SourceRow]) -> Iterator[pa.Table]:
        columns: dict[str, list[Any]] = self._empty()
        for row in rows:
            try:
                record = self.preparer.prepare(row)
                values = [row.position, record.key, record.text, pickle.dumps(record.payload), None]
                fps = [fingerprint(identity, record.text, record.payload) for identity in self.identities]
            except BadRecordError as exc:
                values, fps = [row.position, None, None, None, exc.problem], [None] * len(self.identities)
            for name, value in zip(columns, [*values, *fps], strict=True):
                columns[name].append(value)
            if len(columns["position"]) >= self.rows_per_block:
                yield self._table(columns)
                columns = self._empty()
        if columns["position"]:
            yield self._table(columns)

    def _empty(self) -> dict[str, list[Any]]:
        names = ["position", "key", "text", "payload", "error", *(f"fp{t}" for t in range(len(self.identities)))]
        return {name: [] for name in names}

    def _table(self, columns: dict[str, list[Any]]) -> pa.Table:
        types = {"payload": pa.binary()}
        return pa.table({name: pa.array(values, type=types.get(name, pa.string())) for name, values in columns.items()})


class CatalogDatasource(Datasource):
    """A Ray Data source of prepared catalog rows: one read task per piece (file or row groups).

    Ray's own ``read_json`` / ``read_csv`` drop line numbers and fail a whole file on one
    bad line; this source keeps the local engine's positions and bad-record reports.
    """

    def __init__(self, pieces: Sequence[Piece], prepare: Prepare) -> None:
        super().__init__()
        self.pieces, self.prepare = list(pieces), prepare

    def estimate_inmemory_data_size(self) -> int | None:
        return None

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        metadata = BlockMetadata(num_rows=None, size_bytes=None, input_files=None, exec_stats=None)
        return [ReadTask(_Reader(piece, self.prepare), metadata) for piece in self.pieces]


@dataclass(frozen=True)
class _Reader:
    piece: Piece
    prepare: Prepare

    def __call__(self) -> Iterator[pa.Table]:
        yield from self.prepare.blocks(self.piece.rows())


# -- store access in workers ---------------------------------------------------------------
_OPEN: dict[tuple[str, str], Store] = {}


def open_cached(uri: str, kind: str) -> Store:
    """This worker process's store for (uri, kind), opened once and reused by later tasks."""
    store = _OPEN.get((uri, kind))
    if store is None:
        store = _OPEN[(uri, kind)] = open_store(uri, kind=kind)
    return store


def named(uri: str, action: str, exc: Exception) -> Exception:
    """A store failure as an error naming the store (project errors already do)."""
    if isinstance(exc, LFMRetrievalError):
        return exc
    return StoreUnavailableError(f"store {uri!r} failed to {action}: {type(exc).__name__}: {exc}")


def fingerprint_snapshot_class() -> type:
    """The class of a Ray actor holding one store's fingerprints, for stores Ray workers cannot
    open (in-process and embedded stores): one copy in one actor, asked per batch.

    Defined in a function so Ray ships the class by value: its actor process then imports
    nothing of this package (torch, transformers), which costs ~7 s of CPU on a 2-core machine."""

    class FingerprintSnapshot:
        def __init__(self, fingerprints: dict[str, str]) -> None:
            self.fingerprints = fingerprints

        def lookup(self, keys: list[str]) -> dict[str, str]:
            return {key: self.fingerprints[key] for key in keys if key in self.fingerprints}

    return FingerprintSnapshot


@dataclass(frozen=True)
class Lookup:
    """Where a target's stored fingerprints are read per batch: the store itself, or a snapshot actor."""

    uri: str
    kind: str
    snapshot: Any = None  # an actor handle of fingerprint_snapshot_class()

    def __call__(self, keys: list[str]) -> dict[str, str]:
        if self.snapshot is not None:
            import ray

            return ray.get(self.snapshot.lookup.remote(keys))
        try:
            return open_cached(self.uri, self.kind).fingerprints(keys)
        except Exception as exc:
            raise named(self.uri, "read fingerprints", exc) from exc


@dataclass(frozen=True)
class Diff:
    """Adds ``act<t>`` per target: the one decision rule (prepare.decide) against a per-batch lookup."""

    lookups: tuple[Lookup, ...]
    fail_on_bad: bool

    def __call__(self, table: pa.Table) -> pa.Table:
        errors = table.column("error").to_pylist()
        if self.fail_on_bad:
            for position, error in zip(table.column("position").to_pylist(), errors, strict=True):
                if error is not None:
                    raise BadRecordError(position, error)
        keys = table.column("key").to_pylist()
        good = [key for key in keys if key is not None]
        for t, lookup in enumerate(self.lookups):
            stored = lookup(good)
            new = table.column(f"fp{t}").to_pylist()
            acts = [None if key is None else decide(stored.get(key), fp) for key, fp in zip(keys, new, strict=True)]
            table = table.append_column(f"act{t}", pa.array(acts, type=pa.string()))
        return table


@dataclass(frozen=True)
class Recipe:
    """How an actor builds an encoder: its class and its :class:`~lfm_retrieval.encoders.EncoderSpec`."""

    cls: type
    spec: EncoderSpec

    def build(self) -> Any:
        return build_encoder(self.spec, self.cls)


class Encode:
    """The encoder actor: diffs a batch against the stores, then encodes the rows some target needs.

    Each model is loaded once per actor, when the first batch needs it (a run with nothing
    to encode loads none)."""

    def __init__(self, diff: Diff, recipes: Sequence[Recipe], users: Sequence[Sequence[int]], threads: int) -> None:
        self.diff, self.recipes, self.users = diff, recipes, users  # users: per encoder, the targets it fills
        self.threads = threads
        self.loaded: dict[int, Any] = {}

    def encoder(self, e: int) -> Any:
        if e not in self.loaded:
            spec = self.recipes[e].spec
            if runtime_kind(spec.model, spec.runtime, spec.base_url) == "torch":  # GGUF and remote need no torch
                import torch

                torch.set_num_threads(max(1, self.threads))
            self.loaded[e] = self.recipes[e].build()
        return self.loaded[e]

    def __call__(self, table: pa.Table) -> pa.Table:
        table = self.diff(table)
        truncated = 0
        texts = table.column("text").to_pylist()
        for e in range(len(self.recipes)):
            acts = [table.column(f"act{t}").to_pylist() for t in self.users[e]]
            wanted = [i for i in range(len(texts)) if any(a[i] == "encode" for a in acts)]
            vectors: Sequence[Any] = []
            if wanted:
                encoder = self.encoder(e)
                before = encoder.stats.truncated
                vectors = encoder.encode_documents([texts[i] for i in wanted])
                truncated += encoder.stats.truncated - before
            blobs: list[bytes | None] = [None] * len(texts)
            tokens: list[int | None] = [None] * len(texts)
            for i, vector in zip(wanted, vectors, strict=True):
                array = np.ascontiguousarray(vector, dtype=np.float32)
                blobs[i], tokens[i] = array.tobytes(), (array.shape[0] if array.ndim == 2 else None)
            table = table.append_column(f"vec{e}", pa.array(blobs, type=pa.binary()))
            table = table.append_column(f"tok{e}", pa.array(tokens, type=pa.int32()))
        counts = [truncated] + [0] * (len(texts) - 1) if texts else []
        return table.drop_columns(["text"]).append_column("truncated", pa.array(counts, type=pa.int64()))


@dataclass(frozen=True)
class Apply:
    """Writes one encoded block to the targets' stores; returns the block's part of the summary and keys."""

    targets: tuple[tuple[int, ...], ...]  # per target: the encoder positions it holds
    fields: tuple[str, ...]  # per encoder: "vector" or "token_vectors"
    dims: tuple[int, ...]  # per encoder: the vector dimension

    def __call__(self, stores: Sequence[tuple[str, Store]], table: pa.Table) -> tuple[Summary, list[tuple[str, str]]]:
        part, seen = Summary(), []
        rows = table.to_pydict()
        n = table.num_rows
        part.read = n
        part.truncated = sum(rows["truncated"]) if "truncated" in rows else 0
        vectors = [self._vectors(rows, e) for e in range(len(self.fields))]
        encoded: set[int] = set()
        for t, ((uri, store), held) in enumerate(zip(stores, self.targets, strict=True)):
            records, updates = [], []
            for i in range(n):
                act = rows[f"act{t}"][i]
                key, fp = rows["key"][i], rows[f"fp{t}"][i]
                if act == "encode":
                    fields = {self.fields[e]: vectors[e][i] for e in held}
                    records.append(Record(key, payload=pickle.loads(rows["payload"][i]), fingerprint=fp, **fields))
                    encoded.add(i)
                elif act == "payload":
                    updates.append((key, pickle.loads(rows["payload"][i]), fp))
            try:
                written, updated = write(store, records, updates)
            except Exception as exc:
                raise named(uri, "write", exc) from exc
            part.written += written
            part.payload_updated += updated
        part.encoded = len(encoded)
        acts = [rows[f"act{t}"] for t in range(len(self.targets))]
        for i in range(n):
            if rows["error"][i] is not None:
                part.failed += 1
                part.bad_records.append((rows["position"][i], rows["error"][i]))
                continue
            seen.append((rows["key"][i], rows["position"][i]))
            part.unchanged += all(a[i] == "unchanged" for a in acts)
        return part, seen

    def _vectors(self, rows: dict[str, list[Any]], e: int) -> list[np.ndarray | None]:
        out: list[np.ndarray | None] = []
        for blob, tokens in zip(rows[f"vec{e}"], rows[f"tok{e}"], strict=True):
            if blob is None:
                out.append(None)
                continue
            array = np.frombuffer(blob, dtype=np.float32)
            out.append(array.reshape(tokens, self.dims[e]) if tokens is not None else array)
        return out


class StoreSink(Datasink):
    """A Ray Datasink writing each block to every target's store (opened once per write worker)."""

    def __init__(self, stores: Sequence[tuple[str, str]], apply: Apply) -> None:
        self.stores, self.apply = list(stores), apply
        self.results: list[tuple[Summary, list[tuple[str, str]]]] = []

    def write(self, blocks: Iterable[Any], ctx: Any) -> list[tuple[Summary, list[tuple[str, str]]]]:
        opened = []
        for uri, kind in self.stores:
            try:
                opened.append((uri, open_cached(uri, kind)))
            except Exception as exc:
                raise named(uri, "open", exc) from exc
        return [self.apply(opened, BlockAccessor.for_block(block).to_arrow()) for block in blocks]

    def on_write_complete(self, write_result: Any) -> None:
        self.results = [part for parts in write_result.write_returns for part in parts]

    def get_name(self) -> str:
        return "CatalogStores"

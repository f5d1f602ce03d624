"""Copy a collection between two stores of the same kind: vectors, payloads and fingerprints as
stored, never re-encoded. How a user outgrows the embedded store (to a server, pgvector, Milvus)."""

from __future__ import annotations

from dataclasses import dataclass

from tqdm.auto import tqdm

from lfm_retrieval.errors import CollectionMismatchError
from lfm_retrieval.stores.base import Store
from lfm_retrieval.stores.records import Record
from lfm_retrieval.stores.registry import KINDS, open_store


@dataclass(frozen=True)
class CopyReport:
    """What a copy did: records written, records already in the destination, records in the source."""

    copied: int
    skipped: int
    total: int


def copy_collection(
    source: Store, destination: Store, *, batch_size: int = 256, progress: bool | None = None
) -> CopyReport:
    """Copy every record of ``source`` into ``destination``, streaming ``batch_size`` at a time.

    The destination collection is created with the source's spec, or checked against it: another
    kind, dimension, distance, vector type or model is a CollectionMismatchError before anything
    is written. Resumable: a record the destination already holds with the same fingerprint is
    skipped, so a copy that was killed and is run again ends complete, and ids are the keys'
    stable ids, so nothing is duplicated. Writes happen in one ``bulk_load()`` (indexes built once,
    at the end). ``progress``: a tqdm bar (None: only on a terminal).
    """
    if not isinstance(batch_size, int) or isinstance(batch_size, bool) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int, not {batch_size!r}")
    if source.uri == destination.uri:
        raise ValueError(f"source and destination are the same store ({source.uri!r})")
    spec = source.collection_spec()
    if destination.kind != spec.kind:
        raise CollectionMismatchError(
            f"{source.uri!r} is a {spec.kind} collection but {destination.uri!r} was opened as a "
            f"{destination.kind} store; nothing was written"
        )
    destination.ensure_collection(spec)
    present = destination.fingerprints()
    total = source.count()
    copied = skipped = 0
    batch: list[Record] = []
    bar = tqdm(
        total=total,
        unit="record",
        desc=f"copy to {destination.uri}",
        disable=None if progress is None else not progress,
    )
    try:
        with destination.bulk_load():
            for record in source.scan(batch_size):
                bar.update(1)
                if record.key in present and present[record.key] == record.fingerprint:
                    skipped += 1
                    continue
                batch.append(record)
                if len(batch) >= batch_size:
                    copied += destination.upsert(batch, batch_size=batch_size)
                    batch = []
            if batch:
                copied += destination.upsert(batch, batch_size=batch_size)
    finally:
        bar.close()
    return CopyReport(copied, skipped, total)


def open_existing(uri: str) -> Store:
    """Open the collection a URI names as the kind it holds (LookupError if it does not exist)."""
    for kind in KINDS:
        try:
            store = open_store(uri, kind=kind)
        except ValueError:  # an adapter that does not serve this kind
            continue
        try:
            store.collection_spec()
        except CollectionMismatchError:  # it holds another kind
            store.close()
            continue
        except BaseException:
            store.close()
            raise
        return store
    raise LookupError(f"{uri!r}: no adapter opens this collection as any of {', '.join(KINDS)}")


def copy_uri(
    source_uri: str, destination_uri: str, *, batch_size: int = 256, progress: bool | None = None
) -> CopyReport:
    """:func:`copy_collection` between two URIs; the destination is opened as the source's kind."""
    with open_existing(source_uri) as source, open_store(destination_uri, kind=source.kind) as destination:
        return copy_collection(source, destination, batch_size=batch_size, progress=progress)

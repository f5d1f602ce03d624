"""Open qdrant-edge shards: one shared shard per folder in a process, a clear error across processes.

An ``EdgeShard`` locks its write-ahead log: a second open of the same folder fails, in this
process or another. Stores on one shard folder therefore share one shard, counted by
reference and closed with the last store; every call through it holds the shard's lock.
A folder another process holds is a StoreUnavailableError naming the folder.
"""

from __future__ import annotations

import atexit
import contextlib
import threading
from dataclasses import dataclass, field
from typing import Any

import qdrant_edge as qe

from lfm_retrieval.errors import StoreUnavailableError


@dataclass
class SharedShard:
    """A shard, the lock its calls take, and what the HNSW policy counts."""

    shard: Any
    path: str
    lock: threading.RLock = field(default_factory=threading.RLock)
    refs: int = 0
    #: Points written since the last optimize() (HNSW build), counted in this process.
    pending: int = 0
    #: Open bulk_load() blocks: the HNSW build waits for the last one to end.
    bulk_depth: int = 0


_OPEN: dict[str, SharedShard] = {}
_OPEN_LOCK = threading.Lock()


def _in_use(path: str, uri: str, error: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"Qdrant Edge folder {path} (store {uri!r}) is in use by another process; the embedded engine "
        f"allows one process per folder (close the other one, or copy the collection to a server with "
        f"`lfm-retrieval copy`): {error}"
    )


def acquire(path: str, uri: str, config: Any | None = None, *, create: bool = False) -> SharedShard:
    """The process-wide shard of ``path``: created with ``config``, or loaded (with ``config``'s
    settings written over the stored ones, when given)."""
    with _OPEN_LOCK:
        shared = _OPEN.get(path)
        if shared is None:
            try:
                shard = qe.EdgeShard.create(path, config) if create else qe.EdgeShard.load(path, config)
            except Exception as error:  # the binding raises a bare Exception
                if "WouldBlock" in str(error) or "lock" in str(error).lower():
                    raise _in_use(path, uri, error) from error
                raise
            shared = _OPEN[path] = SharedShard(shard, path)
        shared.refs += 1
        return shared


def release(path: str) -> None:
    """Drop one reference to a shard; the last one flushes and closes it (and unlocks the folder)."""
    with _OPEN_LOCK:
        shared = _OPEN.get(path)
        if shared is None:
            return
        shared.refs -= 1
        if shared.refs > 0:
            return
        del _OPEN[path]
    with shared.lock:
        shared.shard.close()


@atexit.register
def _close_all() -> None:
    """Close the shards stores left open while the interpreter can still do it cleanly."""
    with _OPEN_LOCK:
        shared = list(_OPEN.values())
        _OPEN.clear()
    for entry in shared:
        with contextlib.suppress(Exception):
            entry.shard.close()

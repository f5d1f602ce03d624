"""Open Qdrant clients: one shared client per local folder, a fresh one per server store.

Local mode (``QdrantClient(path=...)``) locks its folder, so a second client on the same
folder in the same process fails. Stores on one folder therefore share one client,
counted by reference and closed with the last store. Local mode is not thread-safe, so
every call through a shared local client holds that client's lock (``guard``).
"""

from __future__ import annotations

import atexit
import contextlib
import math
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from qdrant_client import QdrantClient
from qdrant_client.http.exceptions import ResponseHandlingException

from lfm_retrieval.errors import StoreUnavailableError
from lfm_retrieval_qdrant.uri import IN_MEMORY, QdrantTarget

#: Seconds a server request may take before the store reports the server unavailable.
DEFAULT_TIMEOUT = 10


@dataclass
class ClientHandle:
    """A client and the lock its calls take (a no-op lock for thread-safe server clients)."""

    client: QdrantClient
    lock: contextlib.AbstractContextManager[Any] = field(default_factory=contextlib.nullcontext)
    folder: str | None = None
    where: str = ""


@dataclass
class _Shared:
    client: QdrantClient
    lock: threading.RLock
    refs: int = 0


_LOCAL: dict[str, _Shared] = {}
_LOCAL_LOCK = threading.Lock()


def open_local(folder: str, uri: str = "") -> ClientHandle:
    """The process-wide client of a local folder (or ``:memory:``), one more reference to it.

    A folder another process holds is a StoreUnavailableError naming it.
    """
    with _LOCAL_LOCK:
        shared = _LOCAL.get(folder)
        if shared is None:
            if folder == IN_MEMORY:
                client = QdrantClient(location=IN_MEMORY, force_disable_check_same_thread=True)
            else:
                try:
                    client = QdrantClient(path=folder, force_disable_check_same_thread=True)
                except RuntimeError as error:  # portalocker: "already accessed by another instance"
                    raise StoreUnavailableError(
                        f"local Qdrant folder {folder} (store {uri!r}) is in use by another process; "
                        f"local mode allows one process per folder (use a server to share it): {error}"
                    ) from error
            shared = _LOCAL[folder] = _Shared(client, threading.RLock())
        shared.refs += 1
        return ClientHandle(shared.client, shared.lock, folder)


def release_local(folder: str) -> None:
    """Drop one reference to a folder's client; the last one closes it (and unlocks the folder)."""
    with _LOCAL_LOCK:
        shared = _LOCAL.get(folder)
        if shared is None:
            return
        shared.refs -= 1
        if shared.refs <= 0:
            del _LOCAL[folder]
            with shared.lock:
                shared.client.close()


@atexit.register
def _close_all_local() -> None:
    """Close the local clients stores left open, while the interpreter can still do it cleanly."""
    with _LOCAL_LOCK:
        shared = list(_LOCAL.values())
        _LOCAL.clear()
    for entry in shared:
        with contextlib.suppress(Exception):
            entry.client.close()


def open_server(
    target: QdrantTarget,
    *,
    api_key: str | None = None,
    timeout: float | None = None,
    https: bool | None = None,
    prefer_grpc: bool = False,
    grpc_port: int = 6334,
) -> ClientHandle:
    """A client of the server ``target`` names. Nothing is sent until the first call."""
    client = QdrantClient(
        host=target.host,
        port=target.port,
        https=target.https if https is None else https,
        api_key=api_key,
        timeout=max(1, math.ceil(timeout if timeout is not None else DEFAULT_TIMEOUT)),  # whole seconds
        prefer_grpc=prefer_grpc,
        grpc_port=grpc_port,
        check_compatibility=False,  # it would call the server in the constructor, unbounded by our errors
    )
    scheme = "https" if (target.https if https is None else https) else "http"
    where = f"{scheme}://{target.host}:{target.port}" + (f" (gRPC port {grpc_port})" if prefer_grpc else "")
    return ClientHandle(client, where=where)


def _unavailable_types() -> tuple[type[BaseException], ...]:
    import httpx

    types: list[type[BaseException]] = [ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError]
    try:
        import grpc

        types.append(grpc.RpcError)
    except ImportError:  # pragma: no cover - grpcio is a qdrant-client dependency
        pass
    return tuple(types)


_UNAVAILABLE = _unavailable_types()


def _is_unavailable(error: BaseException) -> bool:
    code = getattr(error, "code", None)
    if callable(code):  # a gRPC error: only transport failures mean "unavailable"
        import grpc

        return code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    return True


def _describe(error: BaseException) -> str:
    cause = getattr(error, "source", None) or error  # ResponseHandlingException wraps the httpx error
    details = getattr(cause, "details", None)
    text = details() if callable(details) else str(cause)  # a gRPC error says it in details()
    return f"{type(cause).__name__}: {text}"


@contextlib.contextmanager
def connection_errors(target: QdrantTarget, operation: str, *, where: str = "") -> Iterator[None]:
    """Turn transport failures (refused, timed out, DNS) in the block into StoreUnavailableError
    naming the URI and the ``operation`` (``where``: the address, when the client's differs from the URI's)."""
    try:
        yield
    except StoreUnavailableError:
        raise
    except _UNAVAILABLE as error:
        if not _is_unavailable(error):
            raise
        raise StoreUnavailableError(
            f"Qdrant at {where or target.where} (store {target.uri!r}) is unreachable ({operation}): {_describe(error)}"
        ) from error

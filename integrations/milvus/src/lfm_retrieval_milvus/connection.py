"""Milvus client errors turned into the project's errors, each naming the store's URI."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import grpc
from pymilvus.exceptions import MilvusException

from lfm_retrieval.errors import LFMRetrievalError, StoreUnavailableError
from lfm_retrieval_milvus.uri import MilvusTarget

_UNAVAILABLE_GRPC = {grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED}
# pymilvus raises code 2 when it cannot open a channel to the server at all.
_CONNECT_FAILED = 2


class MilvusStoreError(LFMRetrievalError, RuntimeError):
    """Milvus refused an operation the adapter sent; the message names the URI and the operation."""


class UnsupportedSpecError(LFMRetrievalError, ValueError):
    """This Milvus (server version or Lite) cannot hold a collection of the asked kind."""


def _message(error: BaseException) -> str:
    if isinstance(error, MilvusException):
        return error.message or str(error)
    if isinstance(error, grpc.RpcError):
        return f"{error.code().name}: {error.details()}"  # type: ignore[attr-defined]
    return str(error)


def is_unavailable(error: BaseException) -> bool:
    """Whether ``error`` says the server could not be reached (rather than refusing a request)."""
    if isinstance(error, grpc.RpcError):
        return error.code() in _UNAVAILABLE_GRPC  # type: ignore[attr-defined]
    if isinstance(error, MilvusException):
        return error.code in _UNAVAILABLE_GRPC or error.code == _CONNECT_FAILED
    return isinstance(error, (ConnectionError, TimeoutError))


@contextmanager
def connection_errors(target: MilvusTarget, operation: str) -> Iterator[None]:
    """Re-raise Milvus and gRPC errors as StoreUnavailableError or MilvusStoreError naming the store's URI."""
    uri = target.display_uri
    try:
        yield
    except LFMRetrievalError:
        raise
    except (MilvusException, grpc.RpcError, ConnectionError, TimeoutError) as error:
        if is_unavailable(error):
            raise StoreUnavailableError(f"Milvus at {uri} is unreachable ({operation}): {_message(error)}") from error
        raise MilvusStoreError(f"Milvus at {uri} refused to {operation}: {_message(error)}") from error

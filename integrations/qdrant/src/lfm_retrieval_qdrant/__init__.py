"""Qdrant stores for LFM2.5 vectors: server URL or embedded local mode.

``lfm_retrieval.open_store("qdrant+local://./index/products")`` (the embedded default, no
server) or ``open_store("qdrant://host:6333/products", api_key=...)`` find this package
through the ``lfm_retrieval.stores`` entry points and call :func:`from_uri`.
"""

from __future__ import annotations

from typing import Any

from lfm_retrieval_qdrant.layout import KEY_FIELD, METADATA_KEY, PAYLOAD_FIELD
from lfm_retrieval_qdrant.store import QdrantDenseStore
from lfm_retrieval_qdrant.uri import QdrantTarget, parse_uri

__all__ = ["KEY_FIELD", "METADATA_KEY", "PAYLOAD_FIELD", "QdrantDenseStore", "QdrantTarget", "from_uri", "parse_uri"]


def from_uri(uri: str, *, kind: str = "dense", **options: Any) -> QdrantDenseStore:
    """Open the store a URI names (entry point of the ``lfm_retrieval.stores`` group).

    ``qdrant+local://<folder>/<collection>``, ``qdrant://host:port/<collection>`` or
    ``qdrant+https://host:port/<collection>``; ``options`` are QdrantDenseStore's.
    """
    if kind != "dense":
        raise ValueError(f"kind {kind!r} is not supported by this Qdrant adapter yet ({uri!r})")
    return QdrantDenseStore(parse_uri(uri), **options)

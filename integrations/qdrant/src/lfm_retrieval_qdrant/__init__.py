"""Qdrant stores for LFM2.5 vectors: server URL or embedded local mode.

``lfm_retrieval.open_store("qdrant+local://./index/products")`` (the embedded default, no
server) or ``open_store("qdrant://host:6333/products", api_key=...)`` find this package
through the ``lfm_retrieval.stores`` entry points and call :func:`from_uri`;
``kind="multivector"`` opens a ColBERT (MaxSim) collection, ``kind="hybrid"`` a dense +
ColBERT one searched in two stages.
"""

from __future__ import annotations

from typing import Any

from lfm_retrieval_qdrant.collection import QdrantCollection
from lfm_retrieval_qdrant.layout import COLBERT_VECTOR, DENSE_VECTOR, KEY_FIELD, METADATA_KEY, PAYLOAD_FIELD
from lfm_retrieval_qdrant.store import QdrantDenseStore, QdrantHybridStore, QdrantMultiVectorStore
from lfm_retrieval_qdrant.uri import QdrantTarget, parse_uri

__all__ = [
    "COLBERT_VECTOR",
    "DENSE_VECTOR",
    "KEY_FIELD",
    "METADATA_KEY",
    "PAYLOAD_FIELD",
    "STORE_CLASSES",
    "QdrantCollection",
    "QdrantDenseStore",
    "QdrantHybridStore",
    "QdrantMultiVectorStore",
    "QdrantTarget",
    "from_uri",
    "parse_uri",
]

#: The store class of each collection kind.
STORE_CLASSES: dict[str, type[QdrantCollection]] = {
    "dense": QdrantDenseStore,
    "multivector": QdrantMultiVectorStore,
    "hybrid": QdrantHybridStore,
}


def from_uri(uri: str, *, kind: str = "dense", **options: Any) -> QdrantCollection:
    """Open the store a URI names (entry point of the ``lfm_retrieval.stores`` group).

    ``qdrant+local://<folder>/<collection>``, ``qdrant://host:port/<collection>`` or
    ``qdrant+https://host:port/<collection>``; ``kind`` is "dense", "multivector" or
    "hybrid"; ``options`` are :class:`QdrantCollection`'s.
    """
    if kind not in STORE_CLASSES:
        raise ValueError(f"kind must be one of {', '.join(STORE_CLASSES)}, not {kind!r} ({uri!r})")
    return STORE_CLASSES[kind](parse_uri(uri), **options)

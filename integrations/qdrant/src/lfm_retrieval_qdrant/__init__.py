"""Qdrant stores for LFM2.5 vectors: a server URL, Qdrant's engine in-process, or local mode.

``lfm_retrieval.open_store("qdrant+edge://./index/products")`` (the embedded default: Qdrant's
own engine in-process, qdrant-edge-py, no server; the ``edge`` extra),
``open_store("qdrant+local://./index/products")`` (qdrant-client's local mode) or
``open_store("qdrant://host:6333/products", api_key=...)`` find this package
through the ``lfm_retrieval.stores`` entry points and call :func:`from_uri`;
``kind="multivector"`` opens a ColBERT (MaxSim) collection, ``kind="hybrid"`` a dense +
ColBERT one searched in two stages.
"""

from __future__ import annotations

from typing import Any

from lfm_retrieval.stores import Store, serves
from lfm_retrieval_qdrant.collection import QdrantCollection
from lfm_retrieval_qdrant.layout import COLBERT_VECTOR, DENSE_VECTOR, KEY_FIELD, METADATA_KEY, PAYLOAD_FIELD
from lfm_retrieval_qdrant.store import QdrantDenseStore, QdrantHybridStore, QdrantMultiVectorStore
from lfm_retrieval_qdrant.uri import FIRST_STAGE_OPTIONS, QdrantTarget, parse_uri, uri_options

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


@serves(*STORE_CLASSES)
def from_uri(uri: str, *, kind: str = "dense", **options: Any) -> Store:
    """Open the store a URI names (entry point of the ``lfm_retrieval.stores`` group).

    ``qdrant+edge://<folder>/<collection>`` (an ``lfm_retrieval_qdrant.edge.QdrantEdgeCollection``),
    ``qdrant+local://<folder>/<collection>``, ``qdrant://host:port/<collection>`` or
    ``qdrant+https://host:port/<collection>``; ``kind`` is "dense", "multivector" or
    "hybrid"; ``options`` are the store class's, also accepted in the query string
    (``?first_stage=none``, ``?prefetch=300&hnsw_ef=128``; see :data:`~lfm_retrieval_qdrant.uri.URI_OPTIONS`).
    """
    target = parse_uri(uri)
    options = {**uri_options(uri), **options}  # arguments win over the query string
    misplaced = sorted(name for name in FIRST_STAGE_OPTIONS if name in options)
    if misplaced and kind != "multivector":
        raise ValueError(f"{uri!r}: {', '.join(misplaced)} set a multivector collection's first stage, not a {kind}'s")
    if target.edge:
        try:
            from lfm_retrieval_qdrant.edge import EDGE_STORE_CLASSES
        except ImportError as error:  # qdrant-edge-py is the optional `edge` extra
            raise ValueError(
                f"{uri!r} needs Qdrant's engine in-process: pip install 'lfm-retrieval-qdrant[edge]' ({error})"
            ) from error
        return EDGE_STORE_CLASSES[kind](target, **options)
    return STORE_CLASSES[kind](target, **options)

"""Milvus stores for LFM2.5 vectors (server or Milvus Lite).

``lfm_retrieval.open_store("milvus://127.0.0.1:19530/products")`` or
``open_store("milvus+lite://./index/milvus.db/products")`` opens a :class:`MilvusDenseStore`;
``kind="multivector"`` a :class:`MilvusMultiVectorStore` (MUVERA first stage, exact MaxSim rerank),
``kind="hybrid"`` a :class:`MilvusHybridStore` (dense first stage, exact MaxSim rerank).
"""

from __future__ import annotations

from typing import Any

from lfm_retrieval.stores import Store, serves
from lfm_retrieval_milvus.connection import MilvusStoreError, UnsupportedSpecError
from lfm_retrieval_milvus.filters import NEVER, ExpressionBuilder, to_filter
from lfm_retrieval_milvus.multivector import MilvusHybridStore, MilvusMultiVectorStore
from lfm_retrieval_milvus.store import MilvusDenseStore
from lfm_retrieval_milvus.uri import MilvusTarget, parse_uri

__all__ = [
    "NEVER",
    "ExpressionBuilder",
    "MilvusDenseStore",
    "MilvusHybridStore",
    "MilvusMultiVectorStore",
    "MilvusStoreError",
    "MilvusTarget",
    "UnsupportedSpecError",
    "from_uri",
    "parse_uri",
    "to_filter",
]


_KINDS: dict[str, type[Store]] = {
    "dense": MilvusDenseStore,
    "multivector": MilvusMultiVectorStore,
    "hybrid": MilvusHybridStore,
}


@serves(*_KINDS)
def from_uri(uri: str, *, kind: str = "dense", **options: Any) -> Store:
    """Open the store a URI names (entry point of the ``lfm_retrieval.stores`` group).

    ``milvus://[user:password@]host[:port]/collection[?db=name]`` or
    ``milvus+lite://<path to a .db file>/collection``. Options: ``timeout`` (seconds to
    connect, default 10), ``request_timeout`` (seconds per call, default 60), ``token``,
    ``consistency`` (of searches: "Session" by default, or "Strong"), ``hnsw_m`` (16),
    ``ef_construction`` (200), ``ef_search`` (128); for ``kind="multivector"`` also ``prefetch``
    (first-stage candidates per search, 300) and ``muvera_k_sim``, ``muvera_dim_proj``,
    ``muvera_r_reps``, ``muvera_seed`` (the encoding of a new collection).
    """
    return _KINDS[kind](parse_uri(uri), **options)  # type: ignore[call-arg]

"""PostgreSQL + pgvector stores for LFM2.5 vectors (vector / halfvec, HNSW, COPY bulk load).

``lfm_retrieval.open_store("postgresql://user@host/db?table=products")`` opens one; see
:class:`PgVectorStore` (and its ``bulk_load()`` for jobs that upsert batch by batch).
"""

from __future__ import annotations

from typing import Any

from lfm_retrieval.stores import serves
from lfm_retrieval_pgvector.store import PgVectorStore

__all__ = ["PgVectorStore", "from_uri"]


@serves("dense")
def from_uri(uri: str, *, kind: str = "dense", **options: Any) -> PgVectorStore:
    """Open the store a URI names (entry point of the ``lfm_retrieval.stores`` group).

    ``postgresql://[user[:password]@][host][:port]/db?table=NAME[&schema=NAME][&libpq params]``.
    Options: ``timeout`` (seconds to connect, default 10), ``pool_size`` (default 4),
    ``ef_search`` (HNSW candidates per search, default 100, raised to k), ``hnsw_m`` (16),
    ``hnsw_ef_construction`` (64), ``maintenance_work_mem`` (for index builds, e.g. "1GB"),
    ``search_settings`` (more settings SET LOCAL for each search), ``build_indexes`` (default
    True; False leaves index builds to :meth:`PgVectorStore.create_indexes`).
    """
    return PgVectorStore(uri, **options)

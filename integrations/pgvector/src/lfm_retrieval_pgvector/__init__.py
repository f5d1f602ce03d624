"""PostgreSQL + pgvector stores for LFM2.5 vectors (vector / halfvec, HNSW, COPY bulk load).

``lfm_retrieval.open_store("postgresql://user@host/db?table=products")`` opens one; see
:class:`PgvectorDenseStore` (and its ``bulk_load()`` for jobs that upsert batch by batch).
``kind="hybrid"`` (dense HNSW prefetch, exact MaxSim rerank) and ``kind="multivector"``
(MUVERA HNSW first stage, exact MaxSim rerank) open :class:`PgvectorHybridStore` and
:class:`PgvectorMultiVectorStore`.
"""

from __future__ import annotations

from typing import Any

from lfm_retrieval.stores import serves
from lfm_retrieval_pgvector.late_interaction import PgvectorHybridStore, PgvectorMultiVectorStore
from lfm_retrieval_pgvector.store import PgTable, PgvectorDenseStore

__all__ = ["PgvectorDenseStore", "PgvectorHybridStore", "PgvectorMultiVectorStore", "from_uri"]

_KINDS: dict[str, type[PgTable]] = {
    "dense": PgvectorDenseStore,
    "multivector": PgvectorMultiVectorStore,
    "hybrid": PgvectorHybridStore,
}


@serves(*_KINDS)
def from_uri(uri: str, *, kind: str = "dense", **options: Any) -> PgTable:
    """Open the store a URI names (entry point of the ``lfm_retrieval.stores`` group).

    ``postgresql://[user[:password]@][host][:port]/db?table=NAME[&schema=NAME][&libpq params]``.
    Options: ``timeout`` (seconds to connect, default 10), ``pool_size`` (default 4),
    ``ef_search`` (HNSW candidates per search, default 100, raised to k), ``hnsw_m`` (16),
    ``hnsw_ef_construction`` (64), ``maintenance_work_mem`` (for index builds, e.g. "1GB"),
    ``search_settings`` (more settings SET LOCAL for each search), ``build_indexes`` (default
    True; False leaves index builds to :meth:`PgvectorDenseStore.create_indexes`). ``kind="multivector"``
    also takes ``prefetch`` (records the MUVERA stage hands to MaxSim, default 300); a hybrid
    search takes ``prefetch`` per call. ``ef_search`` is raised to ``prefetch`` (up
    to pgvector's 1,000; iterative scans go on past it where a filter needs more).
    """
    return _KINDS[kind](uri, **options)

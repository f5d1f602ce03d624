"""ColBERT on PostgreSQL: multivector and hybrid stores, a first stage in SQL and an exact MaxSim rerank.

pgvector has no MaxSim. Both stores keep each record's token vectors in a ``tokens bytea``
column and ask PostgreSQL, in one query, for the first stage's candidates *with* their
token vectors; the exact MaxSim over those candidates runs here, in NumPy:

* ``PgvectorHybridStore``: the ``prefetch`` nearest records by the dense vector (HNSW), filter in
  the same WHERE clause.
* ``PgvectorMultiVectorStore``: the ``prefetch`` best records by the dot product of MUVERA
  encodings (``muvera halfvec`` with an HNSW index; :mod:`lfm_retrieval.muvera`), so no dense
  model is needed.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from psycopg import sql

from lfm_retrieval.muvera import DEFAULT_PREFETCH
from lfm_retrieval.scoring import maxsim_scores
from lfm_retrieval.stores.base import HybridStore, MultiVectorStore
from lfm_retrieval.stores.filters import Node
from lfm_retrieval.stores.records import CollectionSpec, Hit, HybridSpec
from lfm_retrieval.vectors import unit_rows
from lfm_retrieval_pgvector.filters import to_filter
from lfm_retrieval_pgvector.layout import OPERATORS
from lfm_retrieval_pgvector.rows import HalfVector, tokens_from_bytes
from lfm_retrieval_pgvector.store import Finish, PgTable, Rows, Steps


class _MaxSimRerank(PgTable):
    """The shared second stage: the candidates' token vectors, scored by exact MaxSim here."""

    def _token_spec(self) -> CollectionSpec:
        spec = self._require_spec()
        return spec.multivector if isinstance(spec, HybridSpec) else spec

    def _first_stage(self, order: sql.Composable, query_vector: Any, limit: int, filter: Node | None) -> Steps:
        """The statements fetching the ``limit`` rows (id, key, metadata, tokens) nearest by ``order`` that ``filter``
        admits: one query (:meth:`~lfm_retrieval_pgvector.store.PgTable._candidates`)."""
        condition, params = to_filter(filter)
        query = sql.SQL("SELECT id, key, metadata, tokens FROM {} WHERE {} ORDER BY {} %s LIMIT %s").format(
            self.layout.qualified, condition, order
        )
        return self._candidates(query, [*params, query_vector, limit], limit)

    def _rerank(self, token_vectors: np.ndarray, rows: Rows, k: int) -> list[Hit]:
        """The ``k`` best of ``rows`` by exact MaxSim (cosine token similarity normalises rows, as the core does)."""
        if not rows:
            return []
        spec = self._token_spec()
        packed = tokens_from_bytes(b"".join(row[3] for row in rows), spec.dimension, spec.vector_type)
        if spec.distance == "cosine":
            token_vectors, packed = unit_rows(token_vectors), unit_rows(packed)
        lengths = [len(row[3]) // (spec.dimension * (2 if spec.vector_type == "float16" else 4)) for row in rows]
        scores = maxsim_scores([token_vectors], np.split(packed, np.cumsum(lengths)[:-1]))[0]
        top = np.argsort(-scores, kind="stable")[:k]
        return [Hit(str(rows[i][0]), rows[i][1], float(scores[i]), rows[i][2]) for i in top]


class PgvectorHybridStore(_MaxSimRerank, HybridStore):
    """A hybrid collection: ``embedding`` (dense, HNSW) and ``tokens`` per row; dense prefetch, exact MaxSim rerank."""

    def _search_plan(
        self, vector: np.ndarray, token_vectors: np.ndarray, k: int, prefetch: int, filter: Node | None
    ) -> tuple[Steps, Finish]:
        dense = self._require_spec().dense
        query_vector: Any = HalfVector(vector) if dense.vector_type == "float16" else vector
        order = sql.SQL("embedding {}").format(sql.SQL(OPERATORS[dense.distance]))
        steps = self._first_stage(order, query_vector, prefetch, filter)
        return steps, lambda rows: self._rerank(token_vectors, rows, k)


class PgvectorMultiVectorStore(_MaxSimRerank, MultiVectorStore):
    """A multivector collection: ``tokens`` and their MUVERA encoding ``muvera`` (HNSW, inner product) per row.

    ``prefetch``: how many records the MUVERA stage hands to the exact MaxSim (at least ``k``; default
    :data:`lfm_retrieval.muvera.DEFAULT_PREFETCH`, 300).
    """

    def __init__(self, uri: str, *, prefetch: int = DEFAULT_PREFETCH, **options: Any) -> None:
        if isinstance(prefetch, bool) or not isinstance(prefetch, int) or prefetch < 1:
            raise ValueError(f"prefetch must be a positive int, not {prefetch!r}")
        super().__init__(uri, **options)
        self.prefetch = prefetch

    def _search_plan(self, token_vectors: np.ndarray, k: int, filter: Node | None) -> tuple[Steps, Finish]:
        spec = self._require_spec()
        assert self._muvera is not None, "the MUVERA settings are read with the spec"
        query = unit_rows(token_vectors) if spec.distance == "cosine" else token_vectors
        encoded = HalfVector(self._muvera.encode_queries([query])[0])
        steps = self._first_stage(sql.SQL("muvera <#>"), encoded, max(self.prefetch, k), filter)
        return steps, lambda rows: self._rerank(token_vectors, rows, k)

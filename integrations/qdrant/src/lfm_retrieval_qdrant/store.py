"""The Qdrant stores of each kind: dense, multivector (ColBERT MaxSim) and hybrid (dense prefetch -> MaxSim).

All three are :class:`~lfm_retrieval_qdrant.collection.QdrantCollection` (connection,
layout, writes, deletes, payload updates, counts); each adds how its vectors are sent and
how it searches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qdrant_client import models

from lfm_retrieval.stores import CollectionSpec, DenseStore, Hit, HybridStore, MultiVectorStore, Record
from lfm_retrieval.stores.filters import Node
from lfm_retrieval_qdrant.collection import QdrantCollection, first_stage_of, vectors_config
from lfm_retrieval_qdrant.filters import to_filter
from lfm_retrieval_qdrant.first_stage import FIRST_STAGE_DEFAULT, FirstStageMixin
from lfm_retrieval_qdrant.layout import (
    COLBERT_VECTOR,
    DENSE_VECTOR,
    MUVERA_VECTOR,
    collection_metadata,
    query_values,
    stored_tokens,
    stored_vectors,
)


class QdrantDenseStore(QdrantCollection, DenseStore):
    """One Qdrant collection holding one encoder's vectors (one unnamed vector, HNSW).

    ``qdrant+local://<folder>/<collection>`` uses the embedded local mode (stores on one
    folder share one client); ``qdrant://host:port/<collection>`` and
    ``qdrant+https://host:port/<collection>`` a server. Options: see
    :class:`~lfm_retrieval_qdrant.collection.QdrantCollection`.
    """

    def _point_vectors(self, rows: list[tuple[str, np.ndarray, Record]]) -> list[list[float]]:
        return stored_vectors([vector for _, vector, _ in rows], self._require_spec())

    def _search(self, vector: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        spec = self._require_spec()
        return self._query(
            spec,
            query=query_values(vector, spec),
            limit=k,
            query_filter=to_filter(filter),
            search_params=self._search_params,
        )


class QdrantMultiVectorStore(FirstStageMixin, QdrantCollection, MultiVectorStore):
    """One Qdrant collection of ColBERT token matrices, searched by MaxSim.

    With a MUVERA first stage (:mod:`lfm_retrieval_qdrant.first_stage`; on by default for a new
    collection, ``first_stage="none"`` to go without): named vectors ``"colbert"`` and
    ``"muvera"``, and a search is one ``query_points`` call, the MUVERA top-``prefetch`` reordered
    by exact MaxSim. Without: one unnamed multivector (``MultiVectorConfig(comparator=MAX_SIM)``)
    with HNSW off (``m=0``), and a search scores every matching record exactly. Distances
    ``cosine`` (the ColBERT one) and ``dot``; ``float16`` specs use Qdrant's float16 datatype.
    Options: the first stage's (``first_stage``, ``prefetch``, ``muvera_k_sim``,
    ``muvera_dim_proj``, ``muvera_r_reps``, ``muvera_seed``) and
    :class:`~lfm_retrieval_qdrant.collection.QdrantCollection`'s; ``hnsw_ef`` / ``exact`` tune
    the first stage.
    """

    def _default_first_stage(self) -> bool:
        return FIRST_STAGE_DEFAULT["local" if self.target.is_local else "server"]

    def _stored_first_stage(self) -> tuple[int | None, dict[str, Any] | None] | None:
        config = self._collection_config()
        return None if config is None else first_stage_of(config)

    def _layout(self, spec: CollectionSpec) -> tuple[Any, dict[str, Any]]:
        stage = self._new_first_stage(spec)
        if stage is None:
            return super()._layout(spec)
        return vectors_config(spec, stage.spec), collection_metadata(spec, stage.metadata())

    def _value_count(self, vectors: np.ndarray) -> int:
        stage = self._first_stage()
        return int(vectors.size) + (0 if stage is None else stage.spec.dimension)

    def _vectors_read_back(self) -> bool | list[str]:
        return True if self._first_stage() is None else [COLBERT_VECTOR]

    def _point_vectors(self, rows: list[tuple[str, np.ndarray, Record]]) -> Any:
        matrices = [matrix for _, matrix, _ in rows]
        tokens = stored_tokens(matrices, self._require_spec())
        stage = self._first_stage()
        if stage is None:
            return tokens
        return {COLBERT_VECTOR: tokens, MUVERA_VECTOR: stage.document_vectors(matrices).tolist()}

    def _search(self, token_vectors: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        spec = self._require_spec()
        stage = self._first_stage()
        query_filter = to_filter(filter)
        if stage is None:
            return self._query(
                spec,
                query=query_values(token_vectors, spec),
                limit=k,
                query_filter=query_filter,
                search_params=self._search_params,
            )
        first = models.Prefetch(
            query=stage.query_vector(token_vectors),
            using=MUVERA_VECTOR,
            limit=stage.limit(k),
            filter=query_filter,
            params=self._search_params,
        )
        return self._query(
            spec,
            prefetch=first,
            query=query_values(token_vectors, spec),
            using=COLBERT_VECTOR,
            limit=k,
            query_filter=query_filter,
        )


class QdrantHybridStore(QdrantCollection, HybridStore):
    """One Qdrant collection with a dense vector (``"dense"``, HNSW) and ColBERT token vectors
    (``"colbert"``, MaxSim, ``m=0``) per record.

    A search is one ``query_points`` call: the dense top-``prefetch`` (a ``Prefetch`` on
    ``"dense"``) reordered by MaxSim on ``"colbert"``; the filter applies to both stages and
    the scores are MaxSim. ``hnsw_ef`` / ``exact`` tune the dense stage.
    """

    def _point_vectors(self, rows: list[tuple[str, tuple[np.ndarray, np.ndarray], Record]]) -> dict[str, Any]:
        spec = self._require_spec()
        return {
            DENSE_VECTOR: stored_vectors([vectors[0] for _, vectors, _ in rows], spec.dense),
            COLBERT_VECTOR: stored_tokens([vectors[1] for _, vectors, _ in rows], spec.multivector),
        }

    def _search(
        self, vector: np.ndarray, token_vectors: np.ndarray, k: int, prefetch: int, filter: Node | None
    ) -> list[Hit]:
        spec = self._require_spec()
        query_filter = to_filter(filter)
        first_stage = models.Prefetch(
            query=query_values(vector, spec.dense),
            using=DENSE_VECTOR,
            limit=prefetch,
            filter=query_filter,
            params=self._search_params,
        )
        return self._query(
            spec.multivector,
            prefetch=first_stage,
            query=query_values(token_vectors, spec.multivector),
            using=COLBERT_VECTOR,
            limit=k,
            query_filter=query_filter,
        )

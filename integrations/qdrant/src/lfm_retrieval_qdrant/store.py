"""The Qdrant stores of each kind: dense, multivector (ColBERT MaxSim) and hybrid (dense prefetch -> MaxSim).

All three are :class:`~lfm_retrieval_qdrant.collection.QdrantCollection` (connection,
layout, writes, deletes, payload updates, counts); each adds how its vectors are sent and
how it searches.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from qdrant_client import models

from lfm_retrieval.stores import DenseStore, Hit, HybridStore, MultiVectorStore, Record
from lfm_retrieval.stores.filters import Node
from lfm_retrieval_qdrant.collection import QdrantCollection
from lfm_retrieval_qdrant.filters import to_qdrant
from lfm_retrieval_qdrant.layout import COLBERT_VECTOR, DENSE_VECTOR, query_values, stored_tokens, stored_vectors


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
            query_filter=to_qdrant(filter),
            search_params=self._search_params,
        )


class QdrantMultiVectorStore(QdrantCollection, MultiVectorStore):
    """One Qdrant collection of ColBERT token matrices, searched by MaxSim.

    One unnamed multivector (``MultiVectorConfig(comparator=MAX_SIM)``) with HNSW off
    (``m=0``): a search scores every matching record exactly. Distances ``cosine`` (the
    ColBERT one) and ``dot``; ``float16`` specs use Qdrant's float16 datatype.
    """

    def _point_vectors(self, rows: list[tuple[str, np.ndarray, Record]]) -> list[list[list[float]]]:
        return stored_tokens([matrix for _, matrix, _ in rows], self._require_spec())

    def _search(self, token_vectors: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        spec = self._require_spec()
        return self._query(
            spec,
            query=query_values(token_vectors, spec),
            limit=k,
            query_filter=to_qdrant(filter),
            search_params=self._search_params,
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
        query_filter = to_qdrant(filter)
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

"""ColBERT on Milvus: ``kind="multivector"`` and ``kind="hybrid"`` stores.

Both are two stages in one search request and one rerank: Milvus' HNSW finds the
``prefetch`` rows nearest to the query's indexed vector (with the filter applied there) and
returns their token vectors with them; the store orders those by exact MaxSim. The indexed
vector is the record's dense vector (hybrid) or the MUVERA encoding of its token vectors
(multivector; arXiv 2405.19504, the inner product of two encodings approximates MaxSim).

Milvus 2.6.4+ can score embedding lists itself (Array of Structs, ``MAX_SIM_*`` metrics);
none of the engines that install here has them (measured: the 2.3.5 server, Milvus Lite 2.5.1
and 3.2.2 refuse the struct field's index), so the MaxSim stage runs in the client on every
engine (``info()`` says so).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from lfm_retrieval.muvera import DEFAULT_PREFETCH
from lfm_retrieval.scoring import maxsim_scores
from lfm_retrieval.stores.base import HybridStore, MultiVectorStore
from lfm_retrieval.stores.filters import Node
from lfm_retrieval.stores.records import CollectionSpec, Hit, HybridSpec, Record
from lfm_retrieval.vectors import unit_rows
from lfm_retrieval_milvus.collection import MilvusCollection
from lfm_retrieval_milvus.layout import (
    FINGERPRINT,
    KEY,
    MAX_TOP_K,
    METADATA,
    METRICS,
    TOKENS,
    VECTOR,
    build_index_params,
    build_schema,
    read_first_stage,
    spec_properties,
)
from lfm_retrieval_milvus.rows import to_token_rows
from lfm_retrieval_milvus.tokens import from_pages
from lfm_retrieval_milvus.uri import MilvusTarget

if TYPE_CHECKING:
    from lfm_retrieval.muvera import Muvera

#: MUVERA settings a multivector store accepts as ``muvera_<name>=`` (for a new collection).
MUVERA_SETTINGS = ("k_sim", "dim_proj", "r_reps", "seed")
CLIENT_MAXSIM = "exact MaxSim in the client over the candidates' stored token vectors"


def _positive(name: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, not {value!r}")
    return value


class _TokenCollection(MilvusCollection):
    """What the multivector and hybrid stores share: token pages, rerank, scan, info."""

    def _tokens_spec(self) -> CollectionSpec:
        spec = self._require_spec()
        return spec.multivector if isinstance(spec, HybridSpec) else spec

    def _rerank(self, query: np.ndarray, hits: list[dict[str, Any]], k: int) -> list[Hit]:
        """``hits`` (with their token pages) ordered by exact MaxSim against ``query``; the best ``k``."""
        if not hits:
            return []
        spec = self._tokens_spec()
        documents = [from_pages(hit["entity"][TOKENS], spec.dimension, spec.vector_type) for hit in hits]
        if spec.distance == "cosine":
            query, documents = unit_rows(query), [unit_rows(d) for d in documents]
        scores = maxsim_scores([query], documents)[0]
        order = np.argsort(-scores, kind="stable")[:k]
        return [
            Hit(hits[i]["id"], hits[i]["entity"][KEY], float(scores[i]), hits[i]["entity"][METADATA] or {})
            for i in order
        ]

    def _records(self, batch_size: int, with_vector: bool) -> Iterator[Record]:
        spec = self._tokens_spec()
        fields = [KEY, TOKENS, METADATA, FINGERPRINT] + ([VECTOR] if with_vector else [])
        for row in self._iterate("", fields, batch_size=batch_size):
            tokens = from_pages(row[TOKENS], spec.dimension, spec.vector_type)
            vector = self._stored_value(VECTOR, row[VECTOR]).astype(np.float32) if with_vector else None
            yield Record(row[KEY], vector, row[METADATA] or {}, row[FINGERPRINT], tokens)

    def _first_stage_info(self) -> dict[str, Any]:
        raise NotImplementedError

    def info(self) -> dict[str, Any]:
        """How this store searches: its first stage, where MaxSim runs, and the engine."""
        self._require_spec()
        return {
            "kind": self.kind,
            "engine": self.server_version(),
            "first_stage": self._first_stage_info(),
            "max_sim": "client",
            "rerank": CLIENT_MAXSIM,
            "native_max_sim": False,
            "token_storage": f"{self._tokens_spec().vector_type} bytes as base64 pages (ARRAY<VARCHAR> {TOKENS!r})",
        }


class MilvusMultiVectorStore(_TokenCollection, MultiVectorStore):
    """ColBERT token vectors per record, searched by a MUVERA first stage and an exact MaxSim rerank.

    ``prefetch`` (default 300) is how many first-stage candidates each search reranks;
    ``muvera_k_sim``, ``muvera_dim_proj``, ``muvera_r_reps``, ``muvera_seed`` set the encoding of a
    new collection (an existing one keeps what it was made with). Other options: as the dense store.
    """

    def __init__(
        self,
        target: MilvusTarget,
        *,
        prefetch: int = DEFAULT_PREFETCH,
        muvera_k_sim: int | None = None,
        muvera_dim_proj: int | None = None,
        muvera_r_reps: int | None = None,
        muvera_seed: int | None = None,
        **options: Any,
    ) -> None:
        self._prefetch = min(_positive("prefetch", prefetch), MAX_TOP_K)
        given = {"k_sim": muvera_k_sim, "dim_proj": muvera_dim_proj, "r_reps": muvera_r_reps, "seed": muvera_seed}
        self._muvera_settings = {name: value for name, value in given.items() if value is not None}
        for name, value in self._muvera_settings.items():
            if not isinstance(value, int) or isinstance(value, bool) or value < (0 if name == "seed" else 1):
                raise ValueError(f"muvera_{name} must be a {'non-negative' if name == 'seed' else 'positive'} int")
        self._muvera: Muvera | None = None
        super().__init__(target, **options)

    def _read_spec(self) -> dict[str, Any] | None:
        spec = super()._read_spec()
        if spec is not None and self._muvera is None:
            from lfm_retrieval.muvera import Muvera

            stored = read_first_stage(self._description, f"collection {self.uri!r}")
            self._muvera = Muvera.from_config(stored["muvera"])
        return spec

    def _create(self, spec: CollectionSpec) -> None:
        from lfm_retrieval.muvera import DEFAULT_DIM_PROJ, Muvera

        # Narrow token vectors (tests, small models) project to at most their own width.
        settings = {"dim_proj": min(DEFAULT_DIM_PROJ, spec.dimension), **self._muvera_settings}
        muvera = Muvera(spec.dimension, **settings)
        first_stage = {"kind": "muvera", "muvera": muvera.config()}
        size = muvera.embedding_size
        self._create_collection(
            build_schema(spec, size),
            build_index_params(spec, first_stage_dimension=size, **self._index),
            spec_properties(spec, first_stage),
        )
        self._muvera = muvera

    def _encoder(self) -> Muvera:
        self._require_spec()
        if self._muvera is None:
            self._read_spec()
        assert self._muvera is not None
        return self._muvera

    def _unit(self, tokens: np.ndarray) -> np.ndarray:
        return unit_rows(tokens) if self._tokens_spec().distance == "cosine" else tokens

    def _upsert(self, rows: list[tuple[str, np.ndarray, Record]]) -> int:
        spec = self._require_spec()
        encoded = self._encoder().encode_documents([self._unit(tokens) for _, tokens, _ in rows]) if rows else []
        self._write_rows(to_token_rows(rows, spec, list(encoded)))  # every check runs before the first request
        return len(rows)

    def _search(self, token_vectors: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        encoded = self._encoder().encode_queries([self._unit(token_vectors)])[0]
        hits = self._vector_search(encoded, max(self._prefetch, k), filter, "IP", [TOKENS])
        return self._rerank(token_vectors, hits, k)

    def _scan_records(self, batch_size: int) -> Iterator[Record]:
        return self._records(batch_size, with_vector=False)

    def _first_stage_info(self) -> dict[str, Any]:
        return {
            "kind": "muvera",
            "index": "HNSW (IP)",
            "muvera": self._encoder().config(),
            "embedding_size": self._encoder().embedding_size,
            "prefetch": self._prefetch,
        }


class MilvusHybridStore(_TokenCollection, HybridStore):
    """A dense vector (HNSW, the first stage) and ColBERT token vectors (exact MaxSim rerank) per record."""

    def _create(self, spec: HybridSpec) -> None:
        self._check_dense_supported(spec.dense)
        self._create_collection(build_schema(spec), build_index_params(spec, **self._index), spec_properties(spec))

    def _upsert(self, rows: list[tuple[str, tuple[np.ndarray, np.ndarray], Record]]) -> int:
        spec = self._require_spec()
        self._write_rows(to_token_rows(rows, spec, [vectors[0] for _, vectors, _ in rows]))
        return len(rows)

    def _search(
        self, vector: np.ndarray, token_vectors: np.ndarray, k: int, prefetch: int, filter: Node | None
    ) -> list[Hit]:
        spec: HybridSpec = self._require_spec()
        query = vector.astype(np.float16) if spec.dense.vector_type == "float16" else vector
        hits = self._vector_search(query, min(prefetch, MAX_TOP_K), filter, METRICS[spec.dense.distance], [TOKENS])
        return self._rerank(token_vectors, hits, k)

    def _scan_records(self, batch_size: int) -> Iterator[Record]:
        return self._records(batch_size, with_vector=True)

    def _first_stage_info(self) -> dict[str, Any]:
        spec: HybridSpec = self._require_spec()
        return {"kind": "dense", "index": f"HNSW ({METRICS[spec.dense.distance]})", "prefetch": "per search"}

"""MUVERA fixed-dimensional encodings of multivectors: a dense first stage for MaxSim.

MUVERA (Dhulipala et al., "MUVERA: Multi-Vector Retrieval via Fixed Dimensional Encodings",
arXiv 2405.19504) turns a variable number of token vectors into one vector whose dot product
with a query's encoding approximates MaxSim, so any dense (HNSW) index can pick the candidates
an exact MaxSim then reranks. The encoding is FastEmbed's (``fastembed.postprocess.Muvera``,
Qdrant's maintained implementation); this module fixes the defaults, checks input and records
the settings a reopened collection needs to rebuild the same encoding.

Needs the ``muvera`` extra: ``pip install "lfm-retrieval[muvera]"``.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

#: Defaults chosen by recall of exact-MaxSim top-10 within MUVERA top-100 on clustered synthetic
#: token vectors (0.99 at 2,560 dimensions); 2,560 fits pgvector's halfvec HNSW limit of 4,000.
DEFAULT_K_SIM = 3
DEFAULT_DIM_PROJ = 16
DEFAULT_R_REPS = 20
DEFAULT_SEED = 42
#: Records a MUVERA first stage hands to the exact MaxSim rerank by default (every store's
#: ``prefetch``; at least ``k``). Chosen on real text with the default encoding: on 503 answers of a
#: construction-law FAQ (MiniLM token vectors through PyLate's ColBERT head), recall@10 against exact
#: MaxSim was 0.952 with 200 candidates and 0.992 with 300 (synthetic clustered vectors: ~1.0 at 200).
DEFAULT_PREFETCH = 300

_CONFIG_KEYS = ("dim", "k_sim", "dim_proj", "r_reps", "seed")
#: Texts encoded together (bounds the (texts, clusters, dim) working arrays).
_BATCH = 64


def _fastembed_muvera() -> Any:
    try:
        from fastembed.postprocess import Muvera as FastEmbedMuvera
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError(
            'MUVERA encodings need FastEmbed: pip install "lfm-retrieval[muvera]" (fastembed>=0.9.1)'
        ) from exc
    return FastEmbedMuvera


@functools.cache
def _blas_threads() -> Any:
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController()


def _one_blas_thread() -> Any:
    """NumPy's BLAS on one thread while a batch encodes. Its products are small, and beside a busy
    model (the catalog job encodes while it writes) a second BLAS thread only waits for a core:
    measured 1.0 s against 0.04 s for a batch of 64 documents on 2 busy cores."""
    return _blas_threads().limit(limits=1, user_api="blas")


class Muvera:
    """MUVERA fixed-dimensional encodings of multivectors (arXiv 2405.19504), as ``fastembed.postprocess.Muvera``.

    ``dim`` is the width of one token vector; the encoding has ``embedding_size =
    r_reps * 2**k_sim * dim_proj`` dimensions. Two instances with the same :meth:`config`
    encode identically (the random projections come from ``seed``).
    """

    def __init__(
        self,
        dim: int = 128,
        *,
        k_sim: int = DEFAULT_K_SIM,
        dim_proj: int = DEFAULT_DIM_PROJ,
        r_reps: int = DEFAULT_R_REPS,
        seed: int = DEFAULT_SEED,
    ) -> None:
        values = {"dim": dim, "k_sim": k_sim, "dim_proj": dim_proj, "r_reps": r_reps, "seed": seed}
        for name, value in values.items():
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, np.integer))
                or value < (0 if name == "seed" else 1)
            ):
                raise ValueError(f"MUVERA setting {name} must be a positive integer (seed: >= 0), got {value!r}")
        if dim_proj > dim:
            raise ValueError(f"MUVERA dim_proj ({dim_proj}) cannot exceed the token vector width dim ({dim})")
        self.dim, self.k_sim, self.dim_proj, self.r_reps, self.seed = (int(v) for v in values.values())
        self._encoder = _fastembed_muvera()(
            dim=self.dim, k_sim=self.k_sim, dim_proj=self.dim_proj, r_reps=self.r_reps, random_seed=self.seed
        )
        self.embedding_size: int = int(self._encoder.embedding_size)

    def encode_documents(self, token_vectors: Sequence[np.ndarray]) -> np.ndarray:
        """One encoding per document (tokens averaged per cluster, empty clusters filled): ``(n, embedding_size)``."""
        return self._encode(token_vectors, "document")

    def encode_queries(self, token_vectors: Sequence[np.ndarray]) -> np.ndarray:
        """One encoding per query (tokens summed per cluster): ``(n, embedding_size)`` float32."""
        return self._encode(token_vectors, "query")

    def _encode(self, token_vectors: Sequence[np.ndarray], side: str) -> np.ndarray:
        arrays = []
        for i, tokens in enumerate(token_vectors):
            array = np.asarray(tokens, dtype=np.float32)
            if array.ndim != 2 or array.shape[0] == 0 or array.shape[1] != self.dim:
                raise ValueError(
                    f"{side} {i}: MUVERA needs a non-empty (tokens, {self.dim}) array of token vectors, "
                    f"got shape {array.shape}"
                )
            if not np.isfinite(array).all():
                raise ValueError(f"{side} {i}: token vectors contain NaN or infinity")
            arrays.append(array)
        out = np.empty((len(arrays), self.embedding_size), dtype=np.float32)
        with _one_blas_thread():
            for start in range(0, len(arrays), _BATCH):
                out[start : start + _BATCH] = self._batch(arrays[start : start + _BATCH], document=side == "document")
        return out

    def _batch(self, arrays: list[np.ndarray], *, document: bool) -> np.ndarray:
        """FastEmbed's ``process_document`` / ``process_query`` for many texts at once.

        FastEmbed encodes one text at a time in a Python loop over its tokens (~5 ms a document
        here); this computes the same numbers (tested equal) with FastEmbed's own random
        hyperplanes and projections, for a padded batch of texts and every repetition at once: one
        matrix product assigns each token its cluster in all repetitions, one sums the clusters, one
        projects them. The padded tokens are read a few times, not twice per repetition.
        """
        encoder, parts, reps, n = self._encoder, 2**self.k_sim, self.r_reps, len(arrays)
        lengths = np.array([len(a) for a in arrays])
        padded = np.zeros((n, int(lengths.max()), self.dim), dtype=np.float32)
        real = np.arange(padded.shape[1])[None, :] < lengths[:, None]
        padded[real] = np.concatenate(arrays)
        hyperplanes = np.concatenate([p.simhash_vectors for p in encoder.simhash_projections], axis=1)
        signs = (padded @ hyperplanes.astype(np.float32) > 0).reshape(n, -1, reps, self.k_sim)
        cluster = signs @ (1 << np.arange(self.k_sim))  # (texts, tokens, reps)
        # one column per (repetition, cluster): which tokens each holds
        members = np.zeros((n, padded.shape[1], reps * parts), dtype=bool)
        np.put_along_axis(members, cluster + parts * np.arange(reps), True, axis=2)
        members &= real[:, :, None]
        centers = (members.transpose(0, 2, 1).astype(np.float32) @ padded).reshape(n, reps, parts, self.dim)
        if document:
            counts = members.sum(axis=1).reshape(n, reps, parts)
            filled = counts > 0
            centers[filled] /= counts[filled][:, None]
            first = members.argmax(axis=1).reshape(n, reps, parts)  # each cluster's first token
            # Hamming distance between cluster ids: popcount of their XOR
            ids = np.arange(parts)
            hamming = np.array([bin(x).count("1") for x in range(parts)])[ids[:, None] ^ ids[None, :]]
            # per empty cluster: the nearest occupied one (lowest id on ties), and its first token
            distance = np.where(filled[:, :, None, :], hamming, np.iinfo(np.int64).max)
            source = np.take_along_axis(first, distance.argmin(axis=3), axis=2)
            empty = ~filled
            texts = np.broadcast_to(np.arange(n)[:, None, None], empty.shape)
            centers[empty] = padded[texts[empty], source[empty]]
        if self.dim_proj < self.dim:
            projections = np.stack(encoder.dim_reduction_projections).astype(np.float32)  # (reps, dim, dim_proj)
            centers = (1 / np.sqrt(self.dim_proj)) * (centers @ projections[None])
        return centers.reshape(n, -1)

    def config(self) -> dict[str, int]:
        """The settings to record with a collection; :meth:`from_config` rebuilds the same encoding."""
        return {
            "dim": self.dim,
            "k_sim": self.k_sim,
            "dim_proj": self.dim_proj,
            "r_reps": self.r_reps,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: Mapping[str, int]) -> Muvera:
        """The encoder a :meth:`config` describes; ValueError for missing or unknown keys."""
        keys = set(config)
        if keys != set(_CONFIG_KEYS):
            missing, unknown = set(_CONFIG_KEYS) - keys, keys - set(_CONFIG_KEYS)
            raise ValueError(f"not a MUVERA config: missing {sorted(missing)}, unknown {sorted(unknown)}")
        return cls(
            config["dim"],
            k_sim=config["k_sim"],
            dim_proj=config["dim_proj"],
            r_reps=config["r_reps"],
            seed=config["seed"],
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Muvera) and self.config() == other.config()

    def __hash__(self) -> int:
        return hash(tuple(self.config().values()))

    def __repr__(self) -> str:
        settings = ", ".join(f"{k}={v}" for k, v in self.config().items())
        return f"Muvera({settings}, embedding_size={self.embedding_size})"

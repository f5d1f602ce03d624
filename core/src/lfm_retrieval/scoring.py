"""Cosine and MaxSim scoring, and reranking of any candidates without an index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder


class Ranked(NamedTuple):
    """A candidate's position in the input list and its score."""

    index: int
    score: float


def _unit_rows(matrix: np.ndarray) -> np.ndarray:
    matrix = np.asarray(matrix, dtype=np.float32)
    norms = np.linalg.norm(matrix, axis=-1, keepdims=True)
    return matrix / np.maximum(norms, 1e-12)


def cosine_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query row with each document row: shape (queries, documents)."""
    queries, documents = np.atleast_2d(queries), np.atleast_2d(documents)
    if queries.shape[-1] != documents.shape[-1]:
        raise ValueError(f"dimension mismatch: queries are {queries.shape[-1]}-d, documents {documents.shape[-1]}-d")
    return _unit_rows(queries) @ _unit_rows(documents).T


def maxsim_scores(
    queries: Sequence[np.ndarray], documents: Sequence[np.ndarray], *, block_tokens: int = 1 << 20
) -> np.ndarray:
    """Late-interaction score of each query with each document: shape (queries, documents).

    For every query token, the best dot product over the document's tokens, summed over
    query tokens. Token vectors are used as given (ColBERT encoders normalise them).
    Documents are scored in blocks of about ``block_tokens`` tokens to bound memory.
    """
    queries = [np.asarray(q, dtype=np.float32) for q in queries]
    documents = [np.asarray(d, dtype=np.float32) for d in documents]
    scores = np.zeros((len(queries), len(documents)), dtype=np.float32)
    if not queries or not documents:
        return scores
    widths = {q.shape[-1] for q in queries} | {d.shape[-1] for d in documents}
    empty = [i for i, d in enumerate(documents) if d.ndim != 2 or len(d) == 0]
    if len(widths) != 1 or empty:
        raise ValueError(f"token vectors must be non-empty 2-d arrays of one width (widths {sorted(widths)})")
    query_tokens = np.concatenate(queries)  # (all query tokens, dim)
    query_ids = np.repeat(np.arange(len(queries)), [len(q) for q in queries])
    start = 0
    while start < len(documents):
        stop, tokens = start, 0
        while stop < len(documents) and (stop == start or tokens + len(documents[stop]) <= block_tokens):
            tokens += len(documents[stop])
            stop += 1
        block = documents[start:stop]
        sims = query_tokens @ np.concatenate(block).T  # (query tokens, block tokens)
        offsets = np.cumsum([0] + [len(d) for d in block[:-1]])
        best = np.maximum.reduceat(sims, offsets, axis=1)  # (query tokens, block docs)
        np.add.at(scores[:, start:stop], query_ids, best)
        start = stop
    return scores


def rerank(
    query: str | np.ndarray,
    candidates: Sequence[str] | Sequence[np.ndarray] | np.ndarray,
    encoder: DenseEncoder | ColBERTEncoder,
    *,
    top_k: int | None = None,
) -> list[Ranked]:
    """Order candidates for ``query``, best first, with cosine (dense) or MaxSim (ColBERT).

    ``query`` and ``candidates`` are texts (encoded on their sides here) or vectors the
    same encoder produced; no index is needed.
    """
    if len(candidates) == 0:
        return []
    query_vec = encoder.encode_queries([query])[0] if isinstance(query, str) else np.asarray(query)
    texts = isinstance(candidates[0], str)
    doc_vecs = encoder.encode_documents(candidates) if texts else candidates  # type: ignore[arg-type]
    if isinstance(encoder, ColBERTEncoder):
        scores = maxsim_scores([query_vec], list(doc_vecs))[0]
    else:
        scores = cosine_scores(query_vec, np.asarray(doc_vecs))[0]
    order = np.argsort(-scores, kind="stable")[:top_k]
    return [Ranked(int(i), float(scores[i])) for i in order]

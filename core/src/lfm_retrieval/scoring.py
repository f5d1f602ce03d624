"""Cosine and MaxSim scoring, and reranking of any candidates without an index."""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder
from lfm_retrieval.vectors import unit_rows


class Ranked(NamedTuple):
    """A candidate's position in the input list and its score."""

    index: int
    score: float


def cosine_scores(queries: np.ndarray, documents: np.ndarray) -> np.ndarray:
    """Cosine similarity of each query row with each document row: shape (queries, documents)."""
    queries, documents = np.atleast_2d(queries), np.atleast_2d(documents)
    if queries.shape[-1] != documents.shape[-1]:
        raise ValueError(f"dimension mismatch: queries are {queries.shape[-1]}-d, documents {documents.shape[-1]}-d")
    return unit_rows(queries) @ unit_rows(documents).T


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


class ExactMaxSim:
    """Exact MaxSim search over a fixed set of documents, packed once into one token matrix.

    The brute-force reference: every query token against every document token. Packing
    once (instead of per query, as :func:`maxsim_scores` must) makes a search one matrix
    product per block of document tokens plus a segmented max. With ``device`` (e.g.
    ``"cuda"``) the packed tokens live there as a torch tensor and the search runs there
    (float32, the same scores); without it, NumPy on the CPU.
    """

    def __init__(
        self, documents: Sequence[np.ndarray], *, block_tokens: int = 1 << 18, device: str | None = None
    ) -> None:
        documents = [np.asarray(d, dtype=np.float32) for d in documents]
        if not documents or any(d.ndim != 2 or len(d) == 0 for d in documents):
            raise ValueError("documents must be a non-empty list of non-empty (tokens, dim) arrays")
        self.tokens = np.ascontiguousarray(np.concatenate(documents))
        lengths = np.array([len(d) for d in documents])
        self.offsets = np.concatenate([[0], np.cumsum(lengths)[:-1]])
        self.document_of_token = np.repeat(np.arange(len(documents)), lengths)
        self.block_tokens = block_tokens
        self.device = device
        if device is not None:
            import torch  # only with a device: the core imports no model library otherwise

            self._tokens_on_device = torch.from_numpy(self.tokens).to(device)
            self._document_of_token_on_device = torch.from_numpy(self.document_of_token).to(device)

    def scores(self, query: np.ndarray) -> np.ndarray:
        """MaxSim of ``query`` (tokens, dim) with every document: shape (documents,)."""
        query = np.asarray(query, dtype=np.float32)
        if self.device is not None:
            return self._scores_on_device(query)
        best = np.empty((len(query), len(self.offsets)), dtype=np.float32)
        # Blocks end on document boundaries so each block's segmented max is complete.
        starts = self.offsets
        first = 0
        while first < len(starts):
            last = int(np.searchsorted(starts, starts[first] + self.block_tokens, side="left"))
            last = max(last, first + 1)
            stop = starts[last] if last < len(starts) else len(self.tokens)
            sims = query @ self.tokens[starts[first] : stop].T
            best[:, first:last] = np.maximum.reduceat(sims, starts[first:last] - starts[first], axis=1)
            first = last
        return best.sum(axis=0)

    def _scores_on_device(self, query: np.ndarray) -> np.ndarray:
        # A scatter max by document id: blocks need not end on document boundaries here.
        import torch

        tokens, owner = self._tokens_on_device, self._document_of_token_on_device
        with torch.inference_mode():
            q = torch.from_numpy(query).to(tokens.device)
            best = torch.full((len(q), len(self.offsets)), float("-inf"), device=tokens.device)
            for start in range(0, len(tokens), self.block_tokens):
                sims = q @ tokens[start : start + self.block_tokens].T
                index = owner[start : start + self.block_tokens].expand(len(q), -1)
                best.scatter_reduce_(1, index, sims, reduce="amax")
            return best.sum(dim=0).cpu().numpy()

    def search(self, query: np.ndarray, k: int = 10) -> list[Ranked]:
        """The ``k`` best documents for ``query``, best first."""
        scores = self.scores(query)
        top = np.argpartition(-scores, min(k, len(scores)) - 1)[:k] if k < len(scores) else np.arange(len(scores))
        top = top[np.argsort(-scores[top], kind="stable")]
        return [Ranked(int(i), float(scores[i])) for i in top]


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

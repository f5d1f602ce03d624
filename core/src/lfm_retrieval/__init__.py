"""LFM2.5 retrieval models behind the tools people already run.

Importing the package registers the bidirectional LFM2 backbone with transformers, so
sentence-transformers and PyLate build LFM2.5 checkpoints correctly without remote code.
"""

from lfm_retrieval.encoders import LFM25_COLBERT, LFM25_EMBEDDING, ColBERTEncoder, DenseEncoder, EncodeStats, Side
from lfm_retrieval.errors import InvalidTextError, LFMRetrievalError, ModelLoadError
from lfm_retrieval.scoring import cosine_scores, maxsim_scores, rerank
from lfm_retrieval.search import asearch_text, search_text
from lfm_retrieval.stores import open_store

__all__ = [
    "LFM25_COLBERT",
    "LFM25_EMBEDDING",
    "ColBERTEncoder",
    "DenseEncoder",
    "EncodeStats",
    "InvalidTextError",
    "LFMRetrievalError",
    "ModelLoadError",
    "Side",
    "asearch_text",
    "cosine_scores",
    "maxsim_scores",
    "open_store",
    "rerank",
    "search_text",
]

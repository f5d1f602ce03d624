"""LFM2.5 retrieval models behind the tools people already run.

Importing the package imports no model library (torch, transformers, sentence-transformers): stores,
filters, copy and remote encoders work without them. It registers the bidirectional LFM2 backbone
with transformers as soon as transformers is imported (now or later), so sentence-transformers and
PyLate build LFM2.5 checkpoints correctly without remote code.
"""

from lfm_retrieval.encoders import LFM25_COLBERT, LFM25_EMBEDDING, ColBERTEncoder, DenseEncoder, EncodeStats, Side
from lfm_retrieval.errors import InvalidTextError, LFMRetrievalError, ModelLoadError
from lfm_retrieval.runtimes.transformers_hook import register_with_transformers
from lfm_retrieval.scoring import cosine_scores, maxsim_scores, rerank
from lfm_retrieval.search import asearch_text, search_text
from lfm_retrieval.stores import open_store

register_with_transformers()

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

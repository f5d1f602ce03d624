"""Encoders with explicit query/document sides."""

from lfm_retrieval.encoders.batching import EncodeStats, Side
from lfm_retrieval.encoders.colbert import LFM25_COLBERT, ColBERTEncoder
from lfm_retrieval.encoders.dense import LFM25_EMBEDDING, DenseEncoder

__all__ = [
    "LFM25_COLBERT",
    "LFM25_EMBEDDING",
    "ColBERTEncoder",
    "DenseEncoder",
    "EncodeStats",
    "Side",
    "check_model_path",
]


def __getattr__(name: str):
    # loading.py imports torch and transformers: only when asked for (the core imports no model library)
    if name == "check_model_path":
        from lfm_retrieval.encoders.loading import check_model_path

        return check_model_path
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

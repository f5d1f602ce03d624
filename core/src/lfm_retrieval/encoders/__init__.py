"""Encoders with explicit query/document sides."""

from lfm_retrieval.encoders.batching import EncodeStats, Side
from lfm_retrieval.encoders.colbert import LFM25_COLBERT, ColBERTEncoder
from lfm_retrieval.encoders.dense import LFM25_EMBEDDING, DenseEncoder
from lfm_retrieval.encoders.loading import check_model_path

__all__ = [
    "LFM25_COLBERT",
    "LFM25_EMBEDDING",
    "ColBERTEncoder",
    "DenseEncoder",
    "EncodeStats",
    "Side",
    "check_model_path",
]

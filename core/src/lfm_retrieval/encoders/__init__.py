"""Encoders with explicit query/document sides."""

from lfm_retrieval.encoders.batching import EncodeStats
from lfm_retrieval.encoders.build import build_encoder
from lfm_retrieval.encoders.colbert import ColBERTEncoder
from lfm_retrieval.encoders.dense import DenseEncoder
from lfm_retrieval.encoders.spec import EncoderSpec
from lfm_retrieval.runtimes.base import Side
from lfm_retrieval.runtimes.model_ids import LFM25_COLBERT, LFM25_EMBEDDING

__all__ = [
    "LFM25_COLBERT",
    "LFM25_EMBEDDING",
    "ColBERTEncoder",
    "DenseEncoder",
    "EncodeStats",
    "EncoderSpec",
    "Side",
    "build_encoder",
    "check_model_path",
]


def __getattr__(name: str):
    # runtimes/loading.py imports torch and transformers: only when asked for (the core imports no model library)
    if name == "check_model_path":
        from lfm_retrieval.runtimes.loading import check_model_path

        return check_model_path
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

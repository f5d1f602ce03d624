"""Offline stand-ins for the LFM2.5 checkpoints, for tests, examples and benchmarks."""

from lfm_retrieval.testing.checkpoints import (
    build_causal_lfm2,
    build_colbert_checkpoint,
    build_dense_checkpoint,
    build_minilm_colbert,
    build_tokenizer,
    lfm25_config,
    tiny_config,
)

__all__ = [
    "build_causal_lfm2",
    "build_colbert_checkpoint",
    "build_dense_checkpoint",
    "build_minilm_colbert",
    "build_tokenizer",
    "lfm25_config",
    "tiny_config",
]

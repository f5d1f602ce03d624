"""LlamaIndex node postprocessor: rerank any retriever's nodes with LFM2.5-ColBERT-350M (MaxSim)."""

from llama_index.postprocessor.lfm.base import LFMColBERTRerank

__all__ = ["LFMColBERTRerank"]

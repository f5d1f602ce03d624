"""LlamaIndex retrievers over lfm_retrieval's stores: dense, multivector (ColBERT MaxSim) and hybrid."""

from llama_index.retrievers.lfm.base import LFMRetriever, to_portable_filter

__all__ = ["LFMRetriever", "to_portable_filter"]

"""A LlamaIndex vector store over lfm_retrieval's stores: dense, multivector (ColBERT MaxSim) and hybrid."""

from llama_index.vector_stores.lfm.base import LFMVectorStore

__all__ = ["LFMVectorStore"]

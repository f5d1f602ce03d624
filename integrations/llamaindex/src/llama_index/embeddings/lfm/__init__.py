"""LlamaIndex embeddings for LFM2.5-Embedding-350M: the query side for queries, the document side for nodes."""

from llama_index.embeddings.lfm.base import LFMEmbedding, SideKeyedKVStore

__all__ = ["LFMEmbedding", "SideKeyedKVStore"]

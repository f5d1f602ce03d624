"""LangChain integration for the LFM2.5 retrievers (``pip install langchain-lfm``).

- :class:`LFMEmbeddings`: an ``Embeddings`` whose ``embed_documents`` uses the document
  side and ``embed_query`` the query side, in any LangChain vector store.
- :class:`LFMRetriever`: a ``BaseRetriever`` over lfm_retrieval's dense, multivector
  (ColBERT MaxSim) and hybrid stores.
- :class:`LFMColBERTReranker`: a ``BaseDocumentCompressor`` reordering any retriever's
  documents by ColBERT MaxSim.
- :class:`LFMVectorStore`: a ``VectorStore`` over any of lfm_retrieval's stores (a URI or a
  store object), dense, multivector or hybrid, with portable filters.
"""

from langchain_lfm.embeddings import LFMEmbeddings
from langchain_lfm.rerankers import LFMColBERTReranker
from langchain_lfm.retrievers import LFMRetriever
from langchain_lfm.vectorstores import LFMVectorStore

__all__ = ["LFMColBERTReranker", "LFMEmbeddings", "LFMRetriever", "LFMVectorStore"]

"""ColBERT (MaxSim) reranking of any retriever's documents, as a LangChain document compressor."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from langchain_core.callbacks import Callbacks
from langchain_core.documents import Document
from langchain_core.documents.compressor import BaseDocumentCompressor
from pydantic import ConfigDict, Field, PrivateAttr, model_validator

from langchain_lfm._common import check_model_and_kwargs
from lfm_retrieval import LFM25_COLBERT, ColBERTEncoder, InvalidTextError, rerank
from lfm_retrieval.errors import check_query


class LFMColBERTReranker(BaseDocumentCompressor):
    """Reorder documents by ColBERT late interaction (MaxSim) with LFM2.5-ColBERT-350M.

    The query is encoded on the query side (``[Q] ``, expanded to 32 tokens), each
    document's ``page_content`` on the document side (``[D] ``); no index is needed. Returns
    the best ``top_n`` documents (all when ``None``) as copies whose metadata gains
    ``score_key`` (default ``"relevance_score"``, the MaxSim score; higher is better); the
    input documents are not modified.

    Use it on its own (``compress_documents(docs, query)``), in an LCEL chain after any
    retriever, or inside ``ContextualCompressionRetriever`` (from ``langchain-classic``).
    The model is loaded on first use; a local path that is not a sentence-transformers /
    PyLate model folder is refused at construction with a ``ModelLoadError`` naming it.
    A ``None``/blank query or a document with blank text raises ``InvalidTextError``.
    """

    model: str = LFM25_COLBERT
    """Hub id or local folder of a PyLate ColBERT model (default LFM2.5-ColBERT-350M)."""
    top_n: int | None = Field(default=3, ge=1)
    """How many documents to keep (``None``: all, reordered)."""
    score_key: str = "relevance_score"
    """Metadata key the MaxSim score is written to."""
    device: str | None = None
    """Torch device, e.g. ``"cpu"`` or ``"cuda"``."""
    batch_size: int | None = Field(default=None, ge=1)
    """Texts per forward pass (default: the encoder's per device, 32 on CPU and 512 on CUDA)."""
    encoder_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other ``ColBERTEncoder`` arguments: ``backend``, ``dtype``, ``quantize="int8"``, ``api_key``, ..."""
    base_url: str | None = None
    """URL of a server the token vectors come from (no model is loaded here): ``lfm-retrieval serve
    --colbert``, or ``llama-server --pooling none`` with ``model`` the model's local folder."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _encoder: ColBERTEncoder | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _validate_model(self) -> LFMColBERTReranker:
        if self.base_url is None:
            check_model_and_kwargs(self.model, ColBERTEncoder, self.encoder_kwargs)
        return self

    @classmethod
    def from_encoder(cls, encoder: ColBERTEncoder, **fields: Any) -> LFMColBERTReranker:
        """Wrap an already loaded ``ColBERTEncoder``; ``fields`` are the other settings (``top_n``, ...)."""
        if not isinstance(encoder, ColBERTEncoder):
            raise TypeError(f"expected a lfm_retrieval.ColBERTEncoder, got {type(encoder).__name__}")
        reranker = cls(model=encoder.model_name, batch_size=encoder.batch_size, **fields)
        reranker._encoder = encoder
        return reranker

    @property
    def encoder(self) -> ColBERTEncoder:
        """The underlying ``ColBERTEncoder`` (loads the model on first access)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    # against a server, an unnamed model is the server's own
                    served = self.base_url is not None and "model" not in self.model_fields_set
                    self._encoder = ColBERTEncoder(
                        None if served else self.model,
                        base_url=self.base_url,
                        device=self.device,
                        batch_size=self.batch_size,
                        **self.encoder_kwargs,
                    )
        return self._encoder

    def compress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """The ``top_n`` documents by MaxSim against ``query``, best first, scores in metadata."""
        query = check_query(query)
        documents = list(documents)
        if not documents:
            return []
        for position, document in enumerate(documents):
            text = getattr(document, "page_content", None)
            if not isinstance(text, str) or not text.strip():
                raise InvalidTextError(f"documents[{position}] has no text (page_content is {text!r})")
        ranked = rerank(query, [d.page_content for d in documents], self.encoder, top_k=self.top_n)
        return [
            documents[r.index].model_copy(
                update={"metadata": {**documents[r.index].metadata, self.score_key: r.score}}, deep=False
            )
            for r in ranked
        ]

    async def acompress_documents(
        self, documents: Sequence[Document], query: str, callbacks: Callbacks | None = None
    ) -> Sequence[Document]:
        """:meth:`compress_documents` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.compress_documents, documents, query, callbacks)

"""LangChain ``Embeddings`` over lfm_retrieval's DenseEncoder: each call on its own side."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

from langchain_core.embeddings import Embeddings
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

from langchain_lfm._common import check_model_and_kwargs
from lfm_retrieval import LFM25_EMBEDDING, DenseEncoder, InvalidTextError
from lfm_retrieval.errors import check_query


class LFMEmbeddings(BaseModel, Embeddings):
    """LFM2.5-Embedding-350M (or any sentence-transformers model) as a LangChain ``Embeddings``.

    ``embed_documents`` encodes on the document side (the model's ``document`` prompt,
    ``"document: "`` for LFM2.5) and ``embed_query`` on the query side (``"query: "``),
    which LangChain's generic ``HuggingFaceEmbeddings`` does not do by default. Vectors are
    float32 values as Python floats, L2-normalised unless ``normalize=False`` (then cosine
    still ranks alike, dot product does not).

    The model is loaded on first use; a local path that is not a sentence-transformers
    model folder is refused at construction with a ``ModelLoadError`` naming it.

    Bad input raises ``lfm_retrieval.InvalidTextError`` (a ``ValueError``) naming the
    problem: ``None``, non-strings and empty or whitespace-only texts, for queries and for
    each document (by position). ``embed_documents([])`` returns ``[]``.

    >>> embeddings = LFMEmbeddings(model="path/to/LFM2.5-Embedding-350M")  # doctest: +SKIP
    >>> len(embeddings.embed_query("waterproof trail shoes"))  # doctest: +SKIP
    1024
    """

    model: str = LFM25_EMBEDDING
    """Hub id or local folder of a sentence-transformers model (default LFM2.5-Embedding-350M)."""
    device: str | None = None
    """Torch device, e.g. ``"cpu"`` or ``"cuda"`` (default: sentence-transformers' choice)."""
    batch_size: int | None = Field(default=None, ge=1)
    """Texts per forward pass (default: the encoder's per device, 32 on CPU and 512 on CUDA)."""
    normalize: bool = True
    """L2-normalise vectors (the default; cosine == dot product)."""
    encoder_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Other ``DenseEncoder`` arguments: ``dtype``, ``quantize="int8"``, ``max_batch_tokens``, ``chunk_size``."""
    base_url: str | None = None
    """URL of a server the vectors come from (no model is loaded here): ``lfm-retrieval serve``, or any
    OpenAI-compatible ``/v1/embeddings`` (the prompts added here); ``encoder_kwargs`` may hold
    ``api_key``, ``headers`` and ``prompts``."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())

    _encoder: DenseEncoder | None = PrivateAttr(default=None)
    _lock: threading.Lock = PrivateAttr(default_factory=threading.Lock)

    @model_validator(mode="after")
    def _validate_model(self) -> LFMEmbeddings:
        if self.base_url is None:
            check_model_and_kwargs(self.model, DenseEncoder, self.encoder_kwargs)
        return self

    @classmethod
    def from_encoder(cls, encoder: DenseEncoder) -> LFMEmbeddings:
        """Wrap an already loaded ``DenseEncoder`` (shared with a retriever or a catalog job)."""
        if not isinstance(encoder, DenseEncoder):
            raise TypeError(f"expected a lfm_retrieval.DenseEncoder, got {type(encoder).__name__}")
        embeddings = cls(model=encoder.model_name, batch_size=encoder.batch_size, normalize=encoder.normalize)
        embeddings._encoder = encoder
        return embeddings

    @property
    def encoder(self) -> DenseEncoder:
        """The underlying ``DenseEncoder`` (loads the model on first access)."""
        if self._encoder is None:
            with self._lock:
                if self._encoder is None:
                    # against a server, an unnamed model is the server's own
                    served = self.base_url is not None and "model" not in self.model_fields_set
                    self._encoder = DenseEncoder(
                        None if served else self.model,
                        base_url=self.base_url,
                        device=self.device,
                        batch_size=self.batch_size,
                        normalize=self.normalize,
                        **self.encoder_kwargs,
                    )
        return self._encoder

    @property
    def dimension(self) -> int:
        """Vector length (1024 for LFM2.5-Embedding-350M)."""
        return self.encoder.dimension

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """Document-side vectors, one per text, in order."""
        if isinstance(texts, str):
            raise InvalidTextError("embed_documents takes a list of strings, not one string (use [text])")
        texts = list(texts) if isinstance(texts, Iterable) else texts
        if not isinstance(texts, list):
            raise InvalidTextError(f"embed_documents takes a list of strings, not {type(texts).__name__}")
        if not texts:
            return []
        return self.encoder.encode_documents(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        """The query-side vector of one text."""
        return self.encoder.encode_queries([check_query(text)])[0].tolist()

    async def aembed_documents(self, texts: list[str]) -> list[list[float]]:
        """:meth:`embed_documents` in a worker thread, so the event loop keeps running."""
        return await asyncio.to_thread(self.embed_documents, texts)

    async def aembed_query(self, text: str) -> list[float]:
        """The query-side vector of one text; concurrent calls share one model call."""
        text = check_query(text)
        if self._encoder is None:  # loading the model blocks: not on the event loop
            await asyncio.to_thread(lambda: self.encoder)
        return (await self.encoder.aencode_queries([text]))[0].tolist()

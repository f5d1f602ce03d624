"""LFMEmbedding: LlamaIndex's BaseEmbedding over lfm_retrieval's DenseEncoder, one side per method."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from llama_index.core.base.embeddings.base import BaseEmbedding, Embedding
from llama_index.core.bridge.pydantic import Field, PrivateAttr, model_validator
from llama_index.core.callbacks import CallbackManager
from llama_index.core.storage.kvstore.types import DEFAULT_COLLECTION, BaseKVStore

from lfm_retrieval import LFM25_EMBEDDING, DenseEncoder, InvalidTextError, Side
from lfm_retrieval.errors import check_query

# Which side the current call embeds; LlamaIndex's embeddings cache is keyed by text alone,
# so the cache view below adds the side (and the model) to every key it stores.
_SIDE: ContextVar[str] = ContextVar("lfm_embedding_side", default=Side.DOCUMENT.value)


class SideKeyedKVStore(BaseKVStore):
    """A view of an embeddings cache that keeps each model's query and document vectors apart.

    LlamaIndex's ``embeddings_cache`` stores query and text embeddings under the bare
    text, so ``get_query_embedding("x")`` after ``get_text_embedding("x")`` would return
    the document vector. This view stores them in ``<collection>/lfm/<model>/<side>``.
    """

    def __init__(self, inner: BaseKVStore, model_id: str) -> None:
        self.inner = inner
        self.model_id = model_id

    def _collection(self, collection: str) -> str:
        return f"{collection}/lfm/{self.model_id}/{_SIDE.get()}"

    def put(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        self.inner.put(key, val, self._collection(collection))

    async def aput(self, key: str, val: dict, collection: str = DEFAULT_COLLECTION) -> None:
        await self.inner.aput(key, val, self._collection(collection))

    def get(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return self.inner.get(key, self._collection(collection))

    async def aget(self, key: str, collection: str = DEFAULT_COLLECTION) -> dict | None:
        return await self.inner.aget(key, self._collection(collection))

    def get_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return self.inner.get_all(self._collection(collection))

    async def aget_all(self, collection: str = DEFAULT_COLLECTION) -> dict[str, dict]:
        return await self.inner.aget_all(self._collection(collection))

    def delete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return self.inner.delete(key, self._collection(collection))

    async def adelete(self, key: str, collection: str = DEFAULT_COLLECTION) -> bool:
        return await self.inner.adelete(key, self._collection(collection))


@contextmanager
def _query_side() -> Iterator[None]:
    token = _SIDE.set(Side.QUERY.value)
    try:
        yield
    finally:
        _SIDE.reset(token)


class LFMEmbedding(BaseEmbedding):
    """LFM2.5-Embedding-350M (or any sentence-transformers model) for LlamaIndex.

    Query methods (``get_query_embedding``, ``aget_query_embedding``) encode on the query
    side (the model's ``query: `` prompt); text methods (``get_text_embedding``,
    ``get_text_embedding_batch`` and their async forms), which LlamaIndex uses for nodes,
    encode on the document side (``document: ``). The prompts come from the model's own
    ``config_sentence_transformers.json``; there is no instruction to set by hand.

    >>> from llama_index.core import Settings
    >>> Settings.embed_model = LFMEmbedding()  # doctest: +SKIP
    """

    model_name: str = Field(default=LFM25_EMBEDDING, description="Folder or Hub id of the model.")
    device: str | None = Field(default=None, description="Torch device; None picks one.")
    normalize: bool = Field(default=True, description="L2-normalise vectors (cosine == dot product).")
    base_url: str | None = Field(
        default=None, description="URL of an lfm-retrieval serve or OpenAI-compatible embeddings server to use."
    )
    _encoder: DenseEncoder | None = PrivateAttr(default=None)

    def __init__(
        self,
        model_name: str = LFM25_EMBEDDING,
        *,
        device: str | None = None,
        embed_batch_size: int = 32,
        normalize: bool = True,
        encoder: DenseEncoder | None = None,
        base_url: str | None = None,
        api_key: str | None = None,
        callback_manager: CallbackManager | None = None,
        **kwargs: Any,
    ) -> None:
        """Load ``model_name``, or wrap an already loaded ``encoder`` (its model wins), or use
        the server at ``base_url`` (no model is loaded here): ``lfm-retrieval serve``, or any
        OpenAI-compatible ``/v1/embeddings`` (the model's prompts added here; ``api_key`` for hosted ones).

        ``embed_batch_size`` is both LlamaIndex's batch and the encoder's largest batch.
        Raises lfm_retrieval.ModelLoadError naming the model when it cannot be loaded.
        """
        if base_url is not None:
            if encoder is not None:
                raise ValueError("pass either encoder= or base_url=, not both")
            served = None if model_name == LFM25_EMBEDDING else str(model_name)  # unnamed: the server's own
            encoder = DenseEncoder(served, base_url=base_url, api_key=api_key, batch_size=embed_batch_size)
            model_name = encoder.model_name  # the cache keys by the served model
        elif encoder is not None:
            if normalize != encoder.normalize:
                raise ValueError(f"normalize={normalize} differs from the given encoder's ({encoder.normalize})")
            model_name = encoder.model_name
        else:
            encoder = DenseEncoder(str(model_name), device=device, batch_size=embed_batch_size, normalize=normalize)
        super().__init__(
            model_name=str(model_name),
            device=device,
            embed_batch_size=embed_batch_size,
            normalize=normalize,
            base_url=base_url,
            callback_manager=callback_manager,
            **kwargs,
        )
        self._encoder = encoder

    @model_validator(mode="after")
    def _side_keyed_cache(self) -> LFMEmbedding:
        self._wrap_cache()
        return self

    def _wrap_cache(self) -> None:
        cache = self.embeddings_cache
        if cache is not None and not isinstance(cache, SideKeyedKVStore):
            model_id = self.model_name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]
            self.embeddings_cache = SideKeyedKVStore(cache, model_id)

    @classmethod
    def class_name(cls) -> str:
        return "LFMEmbedding"

    @property
    def encoder(self) -> DenseEncoder:
        """The lfm_retrieval encoder behind this embedding (share it with a retriever)."""
        return self._encoder  # type: ignore[return-value]  # set by __init__, local or remote

    @property
    def dimension(self) -> int:
        """Length of every vector."""
        return self.encoder.dimension

    # -- public query methods: mark the side for the embeddings cache ------------------------
    def get_query_embedding(self, query: str) -> Embedding:
        """Embed a query on the query side (cached apart from document vectors)."""
        self._wrap_cache()
        with _query_side():
            return super().get_query_embedding(query)

    async def aget_query_embedding(self, query: str) -> Embedding:
        """Async :meth:`get_query_embedding`; concurrent calls share one model call."""
        self._wrap_cache()
        with _query_side():
            return await super().aget_query_embedding(query)

    # -- the BaseEmbedding hooks ---------------------------------------------------------------
    def _get_query_embedding(self, query: str) -> Embedding:
        return self.encoder.encode_queries([check_query(query)])[0].tolist()

    async def _aget_query_embedding(self, query: str) -> Embedding:
        return (await self.encoder.aencode_queries([check_query(query)]))[0].tolist()

    def _get_text_embedding(self, text: str) -> Embedding:
        return self._get_text_embeddings([text])[0]

    async def _aget_text_embedding(self, text: str) -> Embedding:
        return await asyncio.to_thread(self._get_text_embedding, text)

    def _get_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        if isinstance(texts, str):
            raise InvalidTextError("texts is a single string; pass a list of strings (e.g. [text])")
        try:
            return self.encoder.encode_documents(texts).tolist()
        except InvalidTextError as exc:
            raise InvalidTextError(f"LFMEmbedding cannot embed a document: {exc}") from exc

    async def _aget_text_embeddings(self, texts: list[str]) -> list[Embedding]:
        return await asyncio.to_thread(self._get_text_embeddings, texts)

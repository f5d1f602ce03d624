"""LangChain retriever over lfm_retrieval's dense, multivector (ColBERT) and hybrid stores."""

from __future__ import annotations

from typing import Any

from langchain_core.callbacks import AsyncCallbackManagerForRetrieverRun, CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field, model_validator

from langchain_lfm.embeddings import LFMEmbeddings
from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.search import asearch_text, hit_text, search_text
from lfm_retrieval.stores import Hit, Store, open_store
from lfm_retrieval.stores.kinds import StoreKind

# Keyword arguments ``invoke`` may pass through to a search ("verbose" is LangChain's own).
_SEARCH_OPTIONS = ("k", "filter", "prefetch")


class LFMRetriever(BaseRetriever):
    """Search one of the project's stores with a query encoded on the query side.

    - dense store (``kind="dense"``): encodes with ``dense_encoder``; cosine nearest neighbours.
    - multivector store (``"multivector"``): with ``colbert_encoder``; ColBERT MaxSim.
    - hybrid store (``"hybrid"``): with both; dense prefetch of ``prefetch`` records,
      reordered by MaxSim.

    ``store`` is a store object or a URI (``memory://name``, ``qdrant+local://./index/products``,
    ``postgresql://...?table=t``, ...) opened with ``kind``. Encoders may be given as
    ``DenseEncoder`` / ``ColBERTEncoder`` objects, as an ``LFMEmbeddings`` (dense), or as a
    model name or path; one the kind needs and that is not given is the LFM2.5 model
    (LFM2.5-Embedding-350M, LFM2.5-ColBERT-350M), as in LlamaIndex's ``LFMRetriever``. The
    collection must have been written by the same models (checked before the first search:
    ``CollectionMismatchError``).

    Each hit becomes ``Document(id=key, page_content=payload[text_field], metadata=...)``,
    where ``metadata`` is the stored payload without ``text_field`` plus ``"id"`` (the
    record's key), ``"score"`` (cosine or MaxSim, higher is better) and ``"store_id"`` (the
    stable uuid in the store). A hit whose payload lacks ``text_field`` raises ``KeyError``
    naming the fields it has (set ``text_field`` to the field that holds the text).

    ``k``, ``filter`` (the portable filter form: ``{"brand": "x"}``,
    ``{"price": {"lte": 100}}``, ``{"locale": {"in": [...]}}``, ``$and`` / ``$or``) and
    ``prefetch`` can also be passed per call: ``retriever.invoke(query, k=3)``. An empty,
    whitespace-only or ``None`` query raises ``lfm_retrieval.InvalidTextError`` (a ValueError).
    """

    store: Store
    """The store to search, or a store URI (opened with ``kind``)."""
    kind: StoreKind | None = None
    """Collection kind when ``store`` is a URI (default ``"dense"``); checked against a store object."""
    dense_encoder: DenseEncoder | None = None
    """Query-side dense encoder (dense and hybrid stores; None: LFM2.5-Embedding-350M)."""
    colbert_encoder: ColBERTEncoder | None = None
    """Query-side ColBERT encoder (multivector and hybrid stores; None: LFM2.5-ColBERT-350M)."""
    k: int = Field(default=4, ge=1)
    """How many documents to return."""
    filter: dict[str, Any] | None = None
    """Portable metadata filter applied to every search."""
    prefetch: int = Field(default=100, ge=1)
    """Hybrid stores: dense candidates reordered by MaxSim."""
    text_field: str = "text"
    """Payload field that holds the document text (``page_content``)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _open_and_load(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        data = dict(data)
        if isinstance(data.get("store"), str):
            data["store"] = open_store(data["store"], kind=data.get("kind") or "dense")
        dense = data.get("dense_encoder")
        if isinstance(dense, LFMEmbeddings):
            data["dense_encoder"] = dense.encoder
        elif isinstance(dense, str):
            data["dense_encoder"] = DenseEncoder(dense)
        if isinstance(data.get("colbert_encoder"), str):
            data["colbert_encoder"] = ColBERTEncoder(data["colbert_encoder"])
        return data

    @model_validator(mode="after")
    def _check_encoders(self) -> LFMRetriever:
        kind = StoreKind.of(self.store)
        if not isinstance(self.store, kind.store_class):
            raise TypeError(f"store must be a dense, multivector or hybrid store, not {type(self.store).__name__}")
        if self.kind is not None and self.kind != kind:
            raise ValueError(f"kind={self.kind.value!r} but {self.store.uri!r} is opened as a {kind} store")
        self.kind = kind
        # a missing encoder is the LFM2.5 model, as in LFMEmbeddings(), the rerankers and LlamaIndex's LFMRetriever
        if "dense" in kind.encoders and self.dense_encoder is None:
            self.dense_encoder = DenseEncoder()
        if "colbert" in kind.encoders and self.colbert_encoder is None:
            self.colbert_encoder = ColBERTEncoder()
        return self

    # -- search ---------------------------------------------------------------------------------
    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        hits = search_text(self.store, query, **self._options(kwargs))
        return [self._document(hit) for hit in hits]

    async def _aget_relevant_documents(
        self, query: str, *, run_manager: AsyncCallbackManagerForRetrieverRun, **kwargs: Any
    ) -> list[Document]:
        hits = await asearch_text(self.store, query, **self._options(kwargs))
        return [self._document(hit) for hit in hits]

    # -- helpers --------------------------------------------------------------------------------
    def _options(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """``search_text``'s keyword arguments: the encoders, and k / filter / prefetch (per call or the defaults)."""
        kwargs = {name: value for name, value in kwargs.items() if name != "verbose"}
        unknown = sorted(set(kwargs) - set(_SEARCH_OPTIONS))
        if unknown:
            raise TypeError(f"LFMRetriever got unexpected search arguments {unknown}; it takes {list(_SEARCH_OPTIONS)}")
        options = {name: kwargs.get(name, getattr(self, name)) for name in _SEARCH_OPTIONS}
        return {"dense": self.dense_encoder, "colbert": self.colbert_encoder, **options}

    def _document(self, hit: Hit) -> Document:
        text = hit_text(hit, self.text_field, self.store.uri)
        metadata = {name: value for name, value in hit.payload.items() if name != self.text_field}
        metadata.update(id=hit.key, score=hit.score, store_id=hit.id)
        return Document(id=hit.key, page_content=text, metadata=metadata)

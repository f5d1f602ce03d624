"""LFMRetriever: LlamaIndex's BaseRetriever over lfm_retrieval's dense, multivector and hybrid stores."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks import CallbackManager
from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterCondition, FilterOperator, MetadataFilters

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.errors import InvalidFilterError
from lfm_retrieval.search import asearch_text, hit_text, search_text
from lfm_retrieval.stores import FilterSpec, Hit, Store, open_store, parse_filter
from lfm_retrieval.stores.kinds import StoreKind
from llama_index.embeddings.lfm import LFMEmbedding

#: LlamaIndex operators and the portable filter's own (``==`` is written as the bare value).
_OPERATORS = {
    FilterOperator.NE: "ne",
    FilterOperator.GT: "gt",
    FilterOperator.GTE: "gte",
    FilterOperator.LT: "lt",
    FilterOperator.LTE: "lte",
    FilterOperator.IN: "in",
    FilterOperator.NIN: "nin",
}
_LISTS = (FilterOperator.IN, FilterOperator.NIN)


def to_portable_filter(filters: MetadataFilters | FilterSpec) -> FilterSpec:
    """A LlamaIndex ``MetadataFilters`` as the project's portable filter (other forms unchanged).

    Supported: ``==``, ``!=``, ``>``, ``>=``, ``<``, ``<=``, ``in``, ``nin`` and the ``and`` /
    ``or`` / ``not`` conditions (``not``: none of the filters holds, as in LlamaIndex), nested.
    A node without the field matches ``!=`` and ``nin``. Other operators raise
    InvalidFilterError naming them.
    """
    if not isinstance(filters, MetadataFilters):
        return filters
    items: list[dict[str, Any]] = []
    for item in filters.filters:
        if isinstance(item, MetadataFilters):
            nested = to_portable_filter(item)
            if nested:  # an empty group filters nothing
                items.append(dict(nested))
            continue
        operator = FilterOperator(getattr(item, "operator", FilterOperator.EQ))
        if operator is FilterOperator.EQ:
            items.append({item.key: item.value})
        elif operator in _OPERATORS:
            value = item.value if operator not in _LISTS or isinstance(item.value, list) else [item.value]
            items.append({item.key: {_OPERATORS[operator]: value}})
        else:
            raise InvalidFilterError(
                f"the portable filter form cannot express the {operator.value!r} operator on {item.key!r}; "
                "supported: ==, !=, >, >=, <, <=, in, nin (and/or/not conditions); nothing was searched or changed"
            )
    condition = FilterCondition(filters.condition or FilterCondition.AND)
    if not items:
        return None
    if condition is FilterCondition.NOT:
        return {"$not": items[0] if len(items) == 1 else {"$or": items}}
    if len(items) == 1:
        return items[0]
    return {"$and" if condition is FilterCondition.AND else "$or": items}


def as_dense_encoder(encoder: LFMEmbedding | DenseEncoder | str | None) -> DenseEncoder:
    """The DenseEncoder behind an LFMEmbedding, an encoder, a model path / Hub id, or None (LFM2.5)."""
    if isinstance(encoder, LFMEmbedding):
        return encoder.encoder
    if isinstance(encoder, DenseEncoder):
        return encoder
    return DenseEncoder() if encoder is None else DenseEncoder(encoder)


def as_colbert_encoder(encoder: ColBERTEncoder | str | None) -> ColBERTEncoder:
    """A ColBERTEncoder, one loaded from a model path / Hub id, or None (LFM2.5-ColBERT)."""
    if isinstance(encoder, ColBERTEncoder):
        return encoder
    return ColBERTEncoder() if encoder is None else ColBERTEncoder(encoder)


class LFMRetriever(BaseRetriever):
    """Retrieve ``NodeWithScore`` from a project store: dense, multivector (ColBERT MaxSim) or hybrid.

    ``store`` is an opened store or a URI (``memory://products``,
    ``qdrant+local://./index/products``, ``postgresql://...?table=products``) opened with
    ``kind``. The query is encoded on the query side with ``embed_model`` (dense, hybrid)
    and ``colbert`` (multivector, hybrid); each may be an ``LFMEmbedding`` /
    encoder, a model path or id, or None for the LFM2.5 default. The store's recorded model
    must match (CollectionMismatchError before anything is searched).

    Each hit becomes ``TextNode(id_=hit.key, text=payload[text_field], metadata=payload)``
    with the store's score (cosine, or MaxSim for multivector and hybrid). The stores keep
    no text of their own, so the node text is the payload field ``text_field`` ("text" by
    default; a hit without it raises KeyError naming the fields it has). That field is
    excluded from the metadata LLMs see (it is already the text), and all payload fields
    are excluded from the embed-mode content, so a reranker scores exactly the text.

    ``filters`` is a portable filter (``{"locale": "en", "price": {"lte": 50}}``) or a
    LlamaIndex ``MetadataFilters``. The query string is used as is; a precomputed
    ``QueryBundle.embedding`` is ignored (it may come from another model).
    """

    def __init__(
        self,
        store: Store | str,
        *,
        kind: str | None = None,
        embed_model: LFMEmbedding | DenseEncoder | str | None = None,
        colbert: ColBERTEncoder | str | None = None,
        similarity_top_k: int = 10,
        filters: MetadataFilters | FilterSpec = None,
        prefetch: int = 100,
        text_field: str = "text",
        store_options: Mapping[str, Any] | None = None,
        callback_manager: CallbackManager | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(similarity_top_k, int) or isinstance(similarity_top_k, bool) or similarity_top_k < 1:
            raise ValueError(f"similarity_top_k must be a positive int, not {similarity_top_k!r}")
        if isinstance(store, str):
            self.store: Store = open_store(store, kind=kind or "dense", **dict(store_options or {}))
            self._owns_store = True
        elif isinstance(store, Store):
            if kind is not None and kind != store.kind:
                raise ValueError(f"store {store.uri!r} is a {store.kind} store, not {kind}")
            self.store, self._owns_store = store, False
        else:
            raise TypeError(f"store must be a lfm_retrieval Store or a URI string, not {type(store).__name__}")
        self.kind = StoreKind.of(self.store)
        self.dense: DenseEncoder | None = as_dense_encoder(embed_model) if "dense" in self.kind.encoders else None
        self.colbert: ColBERTEncoder | None = as_colbert_encoder(colbert) if "colbert" in self.kind.encoders else None
        self.similarity_top_k = similarity_top_k
        self.filters: FilterSpec = to_portable_filter(filters)
        parse_filter(self.filters)  # a malformed filter fails here, not at the first query
        self.prefetch = prefetch
        self.text_field = text_field
        super().__init__(callback_manager=callback_manager, verbose=verbose)

    # -- searching ------------------------------------------------------------------------------
    def _options(self) -> dict[str, Any]:
        return {
            "dense": self.dense,
            "colbert": self.colbert,
            "k": self.similarity_top_k,
            "filter": self.filters,
            "prefetch": self.prefetch,
        }

    def search(self, query: str) -> list[Hit]:
        """The store's hits for ``query`` (what :meth:`retrieve` turns into nodes)."""
        return search_text(self.store, query, **self._options())

    async def asearch(self, query: str) -> list[Hit]:
        """Async :meth:`search`."""
        return await asearch_text(self.store, query, **self._options())

    # -- LlamaIndex hooks -----------------------------------------------------------------------
    def to_node(self, hit: Hit) -> NodeWithScore:
        """One hit as a ``NodeWithScore`` (see the class docstring for the text field)."""
        payload = dict(hit.payload)
        node = TextNode(
            id_=hit.key,
            text=hit_text(hit, self.text_field, self.store.uri),
            metadata=payload,
            excluded_embed_metadata_keys=list(payload),
            excluded_llm_metadata_keys=[self.text_field],
        )
        return NodeWithScore(node=node, score=hit.score)

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [self.to_node(hit) for hit in self.search(query_bundle.query_str)]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        return [self.to_node(hit) for hit in await self.asearch(query_bundle.query_str)]

    def close(self) -> None:
        """Close the store if this retriever opened it from a URI."""
        if self._owns_store:
            self.store.close()

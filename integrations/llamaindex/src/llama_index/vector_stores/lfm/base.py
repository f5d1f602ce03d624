"""LFMVectorStore: LlamaIndex's BasePydanticVectorStore over lfm_retrieval's stores, any URI and kind."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from llama_index.core.base.embeddings.base import BaseEmbedding
from llama_index.core.bridge.pydantic import PrivateAttr
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.types import (
    BasePydanticVectorStore,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
    VectorStoreQueryResult,
)
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError
from lfm_retrieval.search import asearch_text, check_models, hit_text, search_text
from lfm_retrieval.stores import (
    CollectionSpec,
    FilterSpec,
    Hit,
    HybridSpec,
    Record,
    Store,
    open_store,
    parse_filter,
    validate_records,
)
from llama_index.embeddings.lfm import LFMEmbedding
from llama_index.retrievers.lfm.base import as_colbert_encoder, as_dense_encoder, to_portable_filter

#: The payload field LlamaIndex's node_to_metadata_dict writes the source document's id to.
REF_DOC_FIELD = "doc_id"
#: A node vector from the index must be this close (cosine) to the store's own document vector.
SAME_MODEL_COSINE = 0.99
#: Records listed per round when deleting by a filter.
DELETE_ROUND = 1000


class LFMVectorStore(BasePydanticVectorStore):
    """A LlamaIndex vector store over any project store: dense, multivector (ColBERT MaxSim) or hybrid.

    ``store`` is an opened store or a URI (``qdrant+edge://./index/docs``, ``memory://docs``,
    ``postgresql://...?table=docs``, ``milvus://...``, ``plaid://...``) opened with ``kind``.
    ``embed_model`` (dense, hybrid) and ``colbert`` (multivector, hybrid) are an ``LFMEmbedding``
    / encoder, a model path or Hub id, or None for the LFM2.5 default. The collection is created
    for them, or its recorded models and dimensions are checked against them
    (CollectionMismatchError) before anything is written or searched.

    Nodes are stored under their node id with the payload LlamaIndex's own stores write
    (``node_to_metadata_dict``: flat metadata, ``doc_id``, the node as JSON) plus the node text
    in ``text_field``, so ``VectorStoreIndex.from_vector_store(store)`` works after a restart and
    ``LFMRetriever`` / ``search_text`` read the same collection.

    Queries are encoded here, on the query side, from the query text
    (``is_embedding_query`` is False: the index passes the text, not its own embedding).
    """

    stores_text: bool = True
    is_embedding_query: bool = False
    flat_metadata: bool = True

    uri: str
    kind: str
    text_field: str = "text"
    prefetch: int = 100

    _store: Store = PrivateAttr()
    _owns_store: bool = PrivateAttr(default=False)
    _dense: DenseEncoder | None = PrivateAttr(default=None)
    _colbert: ColBERTEncoder | None = PrivateAttr(default=None)
    _embedding: LFMEmbedding | None = PrivateAttr(default=None)

    def __init__(
        self,
        store: Store | str,
        *,
        kind: str | None = None,
        embed_model: LFMEmbedding | DenseEncoder | str | None = None,
        colbert: ColBERTEncoder | str | None = None,
        text_field: str = "text",
        prefetch: int = 100,
        store_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not isinstance(text_field, str) or not text_field:
            raise ValueError(f"text_field must be a non-empty string, not {text_field!r}")
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 1:
            raise ValueError(f"prefetch must be a positive int, not {prefetch!r}")
        if isinstance(store, Store):
            if kind is not None and kind != store.kind:
                raise ValueError(f"store {store.uri!r} is a {store.kind} store, not {kind}")
            opened, owns = store, False
        elif isinstance(store, str):
            opened, owns = open_store(store, kind=kind or "dense", **dict(store_options or {})), True
        else:
            raise TypeError(f"store must be a lfm_retrieval Store or a URI string, not {type(store).__name__}")
        super().__init__(uri=opened.uri, kind=opened.kind, text_field=text_field, prefetch=prefetch)
        self._store, self._owns_store = opened, owns
        try:
            self._dense = as_dense_encoder(embed_model) if self.kind != "multivector" else None
            if self._dense is not None:
                given = isinstance(embed_model, LFMEmbedding)
                self._embedding = embed_model if given else LFMEmbedding(encoder=self._dense)
            self._colbert = as_colbert_encoder(colbert) if self.kind != "dense" else None
            self._open_collection()
        except BaseException:
            self.close()
            raise

    @classmethod
    def class_name(cls) -> str:
        return "LFMVectorStore"

    @property
    def client(self) -> Store:
        """The project store behind this vector store."""
        return self._store

    @property
    def embed_model(self) -> BaseEmbedding:
        """The embed model to give the index (``embed_model=``): an ``LFMEmbedding`` over the store's
        dense encoder, so nodes are embedded on the document side by the recorded model. A
        multivector store encodes nodes itself and ignores their vectors: a constant
        ``MockEmbedding`` then spares the index a model."""
        return self._embedding if self._embedding is not None else MockEmbedding(embed_dim=1)

    def _open_collection(self) -> None:
        """Create the collection for the encoders, or check the existing one records them."""
        try:
            existing = self._store.collection_spec()
        except LookupError:
            existing = None
        if existing is not None:
            check_models(self._store, self._dense, self._colbert)
        dense_part = existing.dense if isinstance(existing, HybridSpec) else existing
        vector_type = dense_part.vector_type if dense_part is not None else "float32"
        if self.kind == "hybrid":
            spec: Any = HybridSpec.for_encoders(self._dense, self._colbert, vector_type=vector_type)
        else:
            spec = CollectionSpec.for_encoder(self._dense or self._colbert, vector_type=vector_type)
        self._store.ensure_collection(spec)  # an existing one of other dimensions is refused here

    # -- writing ----------------------------------------------------------------------------
    def _payload(self, node: BaseNode) -> dict[str, Any]:
        if self.text_field in node.metadata:
            raise InvalidRecordError(
                f"node {node.node_id!r} has a metadata field {self.text_field!r}, the field the store keeps the "
                "node text in; rename it or pass another text_field=; nothing written"
            )
        try:
            payload = node_to_metadata_dict(node, remove_text=True, flat_metadata=self.flat_metadata)
        except ValueError as error:  # nested metadata: payload fields must be filterable scalars
            raise InvalidRecordError(f"node {node.node_id!r}: {error}; nothing written") from None
        payload[self.text_field] = node.get_content(metadata_mode=MetadataMode.NONE)
        return payload

    def _dense_vectors(self, nodes: Sequence[BaseNode], texts: list[str]) -> list[Any]:
        """The nodes' own embeddings (the index's, document side), encoded here where a node has none."""
        vectors: list[Any] = [node.embedding for node in nodes]
        missing = [i for i, vector in enumerate(vectors) if vector is None]
        if missing:
            encoded = self._dense.encode_documents([texts[i] for i in missing])
            for i, vector in zip(missing, encoded, strict=True):
                vectors[i] = vector
        return vectors

    def _check_node_model(self, nodes: Sequence[BaseNode], texts: list[str]) -> None:
        """One node per call re-encoded on the document side: the index's vectors must be the recorded
        model's (LlamaIndex gives a vector store no other way to know which model embedded the nodes)."""
        first = next((i for i, node in enumerate(nodes) if node.embedding is not None), None)
        if first is None:
            return
        given = np.asarray(nodes[first].embedding, dtype=np.float32)
        own = self._dense.encode_documents([texts[first]])[0]
        cosine = float(given @ own / (np.linalg.norm(given) * np.linalg.norm(own) or 1.0))
        if cosine < SAME_MODEL_COSINE:
            raise CollectionMismatchError(
                f"node {nodes[first].node_id!r}: its embedding is not {self._dense.model_id!r}'s document vector "
                f"(cosine {cosine:.3f}), the model {self.uri!r} records; build the index with "
                "embed_model=vector_store.embed_model; nothing written"
            )

    def _records(self, nodes: Sequence[BaseNode]) -> list[Record]:
        """Every node as a checked record, before anything is written (a bad node refuses the call)."""
        texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in nodes]
        payloads = [self._payload(node) for node in nodes]
        vectors = self._dense_vectors(nodes, texts) if self._dense is not None else [None] * len(nodes)
        rows = zip(nodes, vectors, payloads, strict=True)
        records = [Record(node.node_id, vector, payload) for node, vector, payload in rows]
        spec = self._store.collection_spec()
        if self._dense is not None:
            validate_records(records, spec.dense if isinstance(spec, HybridSpec) else spec)
            self._check_node_model(nodes, texts)
        if self._colbert is not None:  # the costly part, once the rest is known good
            for record, tokens in zip(records, self._colbert.encode_documents(texts), strict=True):
                record.token_vectors = tokens
            validate_records(records, spec)
        return records

    def add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Write the nodes (upsert by node id, in one checked batch); returns their ids."""
        if not nodes:
            return []
        records = self._records(nodes)
        self._store.upsert(records, batch_size=len(records))
        return [node.node_id for node in nodes]

    async def async_add(self, nodes: Sequence[BaseNode], **add_kwargs: Any) -> list[str]:
        """Async :meth:`add`: encoding in a worker thread, then the store's ``aupsert``."""
        if not nodes:
            return []
        records = await asyncio.to_thread(self._records, nodes)
        await self._store.aupsert(records, batch_size=len(records))
        return [node.node_id for node in nodes]

    # -- deleting ---------------------------------------------------------------------------
    def _probe(self) -> tuple[tuple, dict]:
        """A query that every record scores against (the arguments of ``store.search``, less k and filter)."""
        spec = self._store.collection_spec()
        dense = spec.dense if isinstance(spec, HybridSpec) else spec
        unit = np.zeros(dense.dimension, dtype=np.float32)
        unit[0] = 1.0
        if self.kind == "hybrid":
            tokens = np.zeros((1, spec.multivector.dimension), dtype=np.float32)
            tokens[0, 0] = 1.0
            return (unit, tokens), {}
        return ((unit[None, :],) if self.kind == "multivector" else (unit,)), {}

    def _delete_matching(self, filter: FilterSpec) -> None:
        """Delete every record matching ``filter``.

        The store protocol deletes by key and searches by filter, so the keys are listed by a
        filtered search, a round at a time, until the filter counts nothing."""
        node = parse_filter(filter)
        args, options = self._probe()
        while (left := self._store.count(node)) > 0:
            k = min(left, DELETE_ROUND)
            if self.kind == "hybrid":
                options = {"prefetch": k}
            hits = self._store.search(*args, k, node, **options)  # type: ignore[attr-defined]
            if not hits:
                raise RuntimeError(f"{self.uri!r} counts {left} records matching {filter!r} but lists none")
            self._store.delete(hit.key for hit in hits)

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id``."""
        if not isinstance(ref_doc_id, str) or not ref_doc_id:
            raise ValueError(f"ref_doc_id must be a non-empty string, not {ref_doc_id!r}")
        self._delete_matching({REF_DOC_FIELD: ref_doc_id})

    async def adelete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Async :meth:`delete` (in a worker thread)."""
        await asyncio.to_thread(self.delete, ref_doc_id, **delete_kwargs)

    def delete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Delete nodes by id, or every node matching ``filters``."""
        if (node_ids is None) == (filters is None):
            raise ValueError("delete_nodes takes node_ids or filters (one of them)")
        if node_ids is not None:
            self._store.delete(node_ids)
        else:
            self._delete_matching(to_portable_filter(filters))

    async def adelete_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None, **delete_kwargs: Any
    ) -> None:
        """Async :meth:`delete_nodes` (in a worker thread)."""
        await asyncio.to_thread(self.delete_nodes, node_ids, filters)

    def clear(self) -> None:
        """Delete every node (the collection and its recorded models stay)."""
        self._delete_matching(None)

    # -- querying ---------------------------------------------------------------------------
    def _search_options(self, query: VectorStoreQuery) -> dict[str, Any]:
        """search_text's options for a query; ValueError / InvalidFilterError for what the store cannot do."""
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise ValueError(
                f"LFMVectorStore answers the default query mode, not {query.mode.value!r} "
                "(hybrid search is the store's kind: open it with kind='hybrid')"
            )
        if query.node_ids:
            raise ValueError("LFMVectorStore cannot restrict a query to node_ids; filter on metadata or doc_ids")
        parts = [to_portable_filter(query.filters)] if query.filters is not None else []
        if query.doc_ids:
            parts.append({REF_DOC_FIELD: {"in": list(query.doc_ids)}})
        filter = None if not parts else parts[0] if len(parts) == 1 else {"$and": parts}
        parse_filter(filter)  # a bad filter refuses the query before anything is searched
        return {
            "dense": self._dense,
            "colbert": self._colbert,
            "k": query.similarity_top_k,
            "filter": filter,
            "prefetch": self.prefetch,
        }

    def _by_vector(self, query: VectorStoreQuery, options: dict[str, Any]) -> list[Hit]:
        """A dense query given only as an embedding (no text): searched as given."""
        if self.kind != "dense" or query.query_embedding is None:
            raise ValueError(f"a {self.kind} LFMVectorStore needs the query text (query_str) to encode it")
        check_models(self._store, self._dense, None)
        return self._store.search(query.query_embedding, options["k"], options["filter"])  # type: ignore[attr-defined]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """The best ``similarity_top_k`` nodes for the query text (encoded here, on the query side)."""
        options = self._search_options(query)
        if query.query_str is None:
            return self._result(self._by_vector(query, options))
        return self._result(search_text(self._store, query.query_str, **options))

    async def aquery(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Async :meth:`query`: the query encoded through the encoders' micro-batchers, the store's ``asearch``."""
        options = self._search_options(query)
        if query.query_str is None:
            return self._result(await asyncio.to_thread(self._by_vector, query, options))
        return self._result(await asearch_text(self._store, query.query_str, **options))

    def _node(self, hit: Hit) -> BaseNode:
        """A hit as the node that was added, or, for a record written outside LlamaIndex, a TextNode of its payload."""
        text = hit_text(hit, self.text_field, self.uri)
        if "_node_content" in hit.payload:
            return metadata_dict_to_node(hit.payload, text=text)
        payload = dict(hit.payload)
        return TextNode(
            id_=hit.key,
            text=text,
            metadata=payload,
            excluded_embed_metadata_keys=list(payload),
            excluded_llm_metadata_keys=[self.text_field],
        )

    def _result(self, hits: list[Hit]) -> VectorStoreQueryResult:
        return VectorStoreQueryResult(
            nodes=[self._node(hit) for hit in hits],
            similarities=[hit.score for hit in hits],
            ids=[hit.key for hit in hits],
        )

    def close(self) -> None:
        """Close the store if this vector store opened it from a URI."""
        if self._owns_store:
            self._store.close()

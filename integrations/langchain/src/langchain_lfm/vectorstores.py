"""The project's stores as a LangChain ``VectorStore``: dense, ColBERT multivector and hybrid."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import VectorStore
from langchain_core.vectorstores.utils import maximal_marginal_relevance

from langchain_lfm.embeddings import LFMEmbeddings
from lfm_retrieval import ColBERTEncoder
from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError, InvalidTextError, check_query
from lfm_retrieval.search import hit_text
from lfm_retrieval.stores import (
    AnySpec,
    CollectionSpec,
    FilterSpec,
    Hit,
    HybridSpec,
    Record,
    Store,
    check_payload,
    open_store,
    parse_filter,
    validate_records,
)
from lfm_retrieval.stores.kinds import EncodedQuery, StoreKind


class LFMVectorStore(VectorStore):
    """Any of the project's stores (a URI or a store object) as a LangChain ``VectorStore``.

    ``kind`` picks the collection: ``"dense"`` (the default; one ``embedding`` vector per
    document, cosine), ``"multivector"`` (``colbert`` token vectors, MaxSim) or ``"hybrid"``
    (both: a dense prefetch of ``prefetch`` candidates reordered by MaxSim). Documents are
    stored as their metadata plus ``text_field`` (the ``page_content``); ``filter=`` takes
    the portable filter form over metadata fields (``{"brand": "x"}``,
    ``{"price": {"lte": 100}}``, ``{"$or": [...]}``).

    With :class:`~langchain_lfm.LFMEmbeddings` (and a ``ColBERTEncoder``) documents are
    encoded on the document side and queries on the query side, and the collection records
    the models. Any other LangChain ``Embeddings`` works as a plain vector store: the
    collection is created with the dimension of the first vector written and records the
    embeddings' class (and its ``model`` / ``model_name``, when it has one).

    Before anything is written, deleted or searched the collection's recorded models are
    checked against this store's (``CollectionMismatchError``). ``add_texts`` /
    ``add_documents`` are idempotent by id (a document's ``id`` or ``ids=``; missing ids
    are generated and returned); bad ids, metadata that is not JSON, a metadata field named
    ``text_field``, or bad vectors refuse the whole call before anything is stored; a bad
    filter is refused before anything is encoded or searched.
    """

    def __init__(
        self,
        store: Store | str,
        embedding: Embeddings | None = None,
        *,
        colbert: ColBERTEncoder | str | None = None,
        kind: str | None = None,
        text_field: str = "text",
        prefetch: int = 100,
    ) -> None:
        """Open ``store`` (a URI is opened with ``kind``, default ``"dense"``; a store
        object must be of ``kind`` when given) and check that the encoders it needs are given."""
        if isinstance(store, Store):
            if kind is not None and kind != store.kind:
                raise ValueError(f"kind={kind!r} but {store.uri!r} is opened as a {store.kind} store")
            kind, where = store.kind, store.uri
        elif isinstance(store, str):
            kind, where = kind or "dense", store
        else:
            raise TypeError(f"store must be a store URI or a lfm_retrieval Store, not {type(store).__name__}")
        kind = StoreKind.of(kind)
        if embedding is not None and not isinstance(embedding, Embeddings):
            raise TypeError(f"embedding must be a LangChain Embeddings, not {type(embedding).__name__}")
        if colbert is not None and not isinstance(colbert, ColBERTEncoder | str):
            raise TypeError(f"colbert must be a ColBERTEncoder or a model name, not {type(colbert).__name__}")
        for name, given, article, noun in (
            ("dense", embedding, "an", "embedding"),
            ("colbert", colbert, "a", "colbert"),
        ):
            if given is None and name in kind.encoders:
                raise ValueError(f"a {kind} LFMVectorStore ({where!r}) needs {article} {noun}=")
            if given is not None and name not in kind.encoders:
                raise ValueError(f"a {kind} LFMVectorStore ({where!r}) takes no {noun}= (see kind=)")
        if not isinstance(text_field, str) or not text_field:
            raise ValueError(f"text_field must be a non-empty string, not {text_field!r}")
        if not isinstance(prefetch, int) or isinstance(prefetch, bool) or prefetch < 1:
            raise ValueError(f"prefetch must be a positive int, not {prefetch!r}")
        self._owns_store = isinstance(store, str)
        if isinstance(store, str):
            store = open_store(store, kind=kind)
        if isinstance(colbert, str):
            colbert = ColBERTEncoder(colbert)
        self.store = store
        self.embedding = embedding
        self.colbert = colbert
        self.text_field = text_field
        self.prefetch = prefetch
        self._dense_model_name: str | None = None
        self._checked = False

    @property
    def embeddings(self) -> Embeddings | None:
        return self.embedding

    @property
    def kind(self) -> str:
        """The collection kind: "dense", "multivector" or "hybrid"."""
        return self.store.kind

    def close(self) -> None:
        """Close the store if this object opened it from a URI."""
        if self._owns_store:
            self.store.close()

    # -- construction ---------------------------------------------------------------------------
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str | None] | None = None,
        store: Store | str | None = None,
        **kwargs: Any,
    ) -> LFMVectorStore:
        """A store over ``store`` (URI or object; required) holding ``texts``; ``kwargs`` are
        the constructor's (``colbert``, ``kind``, ``text_field``, ``prefetch``)."""
        vectorstore = cls(_required_store(store), embedding, **kwargs)
        vectorstore.add_texts(texts, metadatas, ids=ids)
        return vectorstore

    @classmethod
    async def afrom_texts(
        cls,
        texts: list[str],
        embedding: Embeddings | None,
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str | None] | None = None,
        store: Store | str | None = None,
        **kwargs: Any,
    ) -> LFMVectorStore:
        """Async :meth:`from_texts`."""
        vectorstore = await asyncio.to_thread(cls, _required_store(store), embedding, **kwargs)
        await vectorstore.aadd_texts(texts, metadatas, ids=ids)
        return vectorstore

    # -- writes ---------------------------------------------------------------------------------
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Encode ``texts`` on the document side and upsert them by id; returns the ids."""
        _no_options("add_texts", kwargs)
        keys, texts, payloads = self._prepare(texts, metadatas, ids)
        if not keys:
            return []
        vectors = self.embedding.embed_documents(texts) if self.embedding is not None else None
        tokens = self.colbert.encode_documents(texts) if self.colbert is not None else None
        spec, records = self._records(keys, payloads, vectors, tokens)
        self.store.ensure_collection(spec)
        self.store.upsert(records)
        return keys

    async def aadd_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict[str, Any]] | None = None,
        *,
        ids: list[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Async :meth:`add_texts`: the embeddings' ``aembed_documents`` and the store's ``aupsert``."""
        _no_options("aadd_texts", kwargs)
        keys, texts, payloads = self._prepare(texts, metadatas, ids)
        if not keys:
            return []
        vectors = await self.embedding.aembed_documents(texts) if self.embedding is not None else None
        tokens = await asyncio.to_thread(self.colbert.encode_documents, texts) if self.colbert is not None else None
        spec, records = await asyncio.to_thread(self._records, keys, payloads, vectors, tokens)
        await asyncio.to_thread(self.store.ensure_collection, spec)
        await self.store.aupsert(records)
        return keys

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Delete documents by id (ids not stored are ignored)."""
        _no_options("delete", kwargs)
        keys = _delete_keys(ids)
        if keys and self._existing_spec() is not None:
            self.store.delete(keys)
        return True

    async def adelete(self, ids: list[str] | None = None, **kwargs: Any) -> bool | None:
        """Async :meth:`delete`."""
        _no_options("adelete", kwargs)
        keys = _delete_keys(ids)
        if keys and await self._aexisting_spec() is not None:
            await asyncio.to_thread(self.store.delete, keys)
        return True

    # -- reads ----------------------------------------------------------------------------------
    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The stored documents of ``ids`` that exist, in the order of ``ids``.

        The store protocol reads records by id only for their fingerprints, so the records
        found that way are then read back with a scan of the collection, stopping as soon as
        all of them are found."""
        keys = [_key(key, f"ids[{i}]") for i, key in enumerate(ids)]
        if not keys or self._existing_spec() is None:
            return []
        present = set(self.store.fingerprints(keys))
        found: dict[str, Document] = {}
        if present:
            for record in self.store.scan():
                if record.key in present:
                    found[record.key] = self._document(Hit(record.id, record.key, 0.0, record.payload))
                    if len(found) == len(present):
                        break
        return [found[key] for key in dict.fromkeys(keys) if key in found]

    async def aget_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """Async :meth:`get_by_ids` (in a worker thread)."""
        return await asyncio.to_thread(self.get_by_ids, ids)

    def similarity_search(self, query: str, k: int = 4, filter: FilterSpec = None, **kwargs: Any) -> list[Document]:
        """The ``k`` documents most similar to ``query`` (encoded on the query side), best first."""
        return [document for document, _ in self.similarity_search_with_score(query, k, filter, **kwargs)]

    async def asimilarity_search(
        self, query: str, k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search`."""
        return [document for document, _ in await self.asimilarity_search_with_score(query, k, filter, **kwargs)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """(document, score) pairs, best first: cosine for dense stores, MaxSim for multivector
        and hybrid ones (higher is better). ``prefetch=`` overrides the hybrid prefetch."""
        prefetch = self._search_options(query, filter, kwargs)
        if self._existing_spec() is None:
            return []
        vector = self.embedding.embed_query(query) if self.embedding is not None else None
        tokens = self.colbert.encode_queries([query])[0] if self.colbert is not None else None
        return self._scored(self._search(False, vector, tokens, k, filter, prefetch))

    async def asimilarity_search_with_score(
        self, query: str, k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        """Async :meth:`similarity_search_with_score`: the encoders' async query paths (concurrent
        queries share model calls) and the store's ``asearch``."""
        prefetch = self._search_options(query, filter, kwargs)
        if await self._aexisting_spec() is None:
            return []
        vector = await self.embedding.aembed_query(query) if self.embedding is not None else None
        tokens = (await self.colbert.aencode_queries([query]))[0] if self.colbert is not None else None
        return self._scored(await self._search(True, vector, tokens, k, filter, prefetch))

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[Document]:
        """The ``k`` documents nearest to a query vector (dense stores)."""
        self._dense_only("similarity_search_by_vector", filter, kwargs)
        if self._existing_spec() is None:
            return []
        return [document for document, _ in self._scored(self._search(False, embedding, None, k, filter, 0))]

    async def asimilarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: FilterSpec = None, **kwargs: Any
    ) -> list[Document]:
        """Async :meth:`similarity_search_by_vector`."""
        self._dense_only("asimilarity_search_by_vector", filter, kwargs)
        if await self._aexisting_spec() is None:
            return []
        hits = await self._search(True, embedding, None, k, filter, 0)
        return [document for document, _ in self._scored(hits)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``k`` documents chosen for similarity to ``query`` and diversity among themselves,
        from the ``fetch_k`` best (dense and hybrid stores; diversity by the dense vectors,
        which stores do not return: the candidates' texts are encoded again on the document side)."""
        self._mmr_supported()
        candidates = self.similarity_search(query, fetch_k, filter, **kwargs)
        if not candidates:
            return []
        vector = self.embedding.embed_query(query)
        return _mmr(
            vector, candidates, self.embedding.embed_documents([d.page_content for d in candidates]), k, lambda_mult
        )

    async def amax_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search`."""
        self._mmr_supported()
        candidates = await self.asimilarity_search(query, fetch_k, filter, **kwargs)
        if not candidates:
            return []
        vector = await self.embedding.aembed_query(query)
        vectors = await self.embedding.aembed_documents([d.page_content for d in candidates])
        return _mmr(vector, candidates, vectors, k, lambda_mult)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        """:meth:`max_marginal_relevance_search` from a query vector (dense stores)."""
        candidates = self.similarity_search_by_vector(embedding, fetch_k, filter, **kwargs)
        if not candidates:
            return []
        vectors = self.embedding.embed_documents([d.page_content for d in candidates])
        return _mmr(embedding, candidates, vectors, k, lambda_mult)

    async def amax_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: FilterSpec = None,
        **kwargs: Any,
    ) -> list[Document]:
        """Async :meth:`max_marginal_relevance_search_by_vector`."""
        candidates = await self.asimilarity_search_by_vector(embedding, fetch_k, filter, **kwargs)
        if not candidates:
            return []
        vectors = await self.embedding.aembed_documents([d.page_content for d in candidates])
        return _mmr(embedding, candidates, vectors, k, lambda_mult)

    def _select_relevance_score_fn(self) -> Any:
        """Cosine similarity in [-1, 1] to a relevance in [0, 1] (dense stores; MaxSim has no fixed range)."""
        if self.kind != "dense":
            raise NotImplementedError(
                f"relevance scores in [0, 1] need a dense store; a {self.kind} store scores by MaxSim, "
                "which has no fixed range (use similarity_search_with_score)"
            )
        return lambda score: min(1.0, max(0.0, (1.0 + score) / 2.0))  # clipped: float rounding passes 1

    # -- helpers --------------------------------------------------------------------------------
    def _dense_model(self) -> str:
        """The name the collection records for ``embedding``: the encoder's model for
        LFMEmbeddings, else the embeddings' class (and its model name, if it has one)."""
        if self._dense_model_name is None:
            embedding = self.embedding
            if isinstance(embedding, LFMEmbeddings):
                name = embedding.encoder.model_id
            else:
                model = getattr(embedding, "model", None) or getattr(embedding, "model_name", None)
                name = type(embedding).__name__ + (f":{model}" if isinstance(model, str) and model else "")
            self._dense_model_name = name
        return self._dense_model_name

    def _existing_spec(self) -> AnySpec | None:
        """The collection's spec once its recorded models are checked against ours; None if
        the collection does not exist yet."""
        try:
            spec = self.store.collection_spec()
        except LookupError:
            return None
        if not self._checked:
            for part, side in StoreKind.of(self.store).spec_parts(spec):
                ours = self._dense_model() if side == "dense" else self.colbert.model_id
                if part.model and part.model != ours:
                    raise CollectionMismatchError(
                        f"collection {self.store.uri!r} holds vectors of {part.model!r}, not of {ours!r} "
                        "(this vector store's model); nothing was written or searched"
                    )
            self._checked = True
        return spec

    async def _aexisting_spec(self) -> AnySpec | None:
        """Async :meth:`_existing_spec`: a worker thread only until the collection is read and checked."""
        if self._checked and self.store.spec is not None:
            return self.store.spec
        return await asyncio.to_thread(self._existing_spec)

    def _prepare(
        self, texts: Iterable[str], metadatas: list[dict[str, Any]] | None, ids: list[str | None] | None
    ) -> tuple[list[str], list[str], list[dict[str, Any]]]:
        """Keys (given or generated), texts and payloads of one call, all checked before anything is encoded."""
        if isinstance(texts, str):
            raise InvalidTextError("add_texts takes a list of strings, not one string (use [text])")
        texts = list(texts)
        for name, values in (("metadatas", metadatas), ("ids", ids)):
            if values is not None and len(values) != len(texts):
                raise ValueError(f"{len(values)} {name} for {len(texts)} texts; nothing written")
        keys = [
            str(uuid.uuid4()) if ids is None or ids[i] is None else _key(ids[i], f"ids[{i}]") for i in range(len(texts))
        ]
        payloads = []
        for i, (key, text) in enumerate(zip(keys, texts, strict=True)):
            if not isinstance(text, str) or not text.strip():
                raise InvalidTextError(f"texts[{i}] ({key!r}) has no text: {text!r}; nothing written")
            metadata = {} if metadatas is None or metadatas[i] is None else metadatas[i]
            if not isinstance(metadata, dict):
                raise InvalidRecordError(f"metadatas[{i}] ({key!r}) is {type(metadata).__name__}, not a dict")
            if self.text_field in metadata:
                raise InvalidRecordError(
                    f"metadatas[{i}] ({key!r}) has a {self.text_field!r} field, the field that holds the text "
                    "(text_field=); rename it or choose another text_field; nothing written"
                )
            payloads.append(check_payload(key, {**metadata, self.text_field: text}))
        return keys, texts, payloads

    def _records(
        self, keys: list[str], payloads: list[dict[str, Any]], vectors: Any, tokens: Any
    ) -> tuple[AnySpec, list[Record]]:
        """The collection spec and the records of one call, validated whole (nothing written yet)."""
        for name, values in (("embedding vectors", vectors), ("colbert token vectors", tokens)):
            if values is not None and len(values) != len(keys):
                raise InvalidRecordError(f"got {len(values)} {name} for {len(keys)} texts; nothing written")
        dense_spec = None
        if vectors is not None:
            dimension = len(vectors[0]) if np.ndim(vectors[0]) == 1 else 0
            if not dimension:
                raise InvalidRecordError(f"record {keys[0]!r}: the embedding is not one vector; nothing written")
            dense_spec = CollectionSpec(int(dimension), "cosine", "float32", self._dense_model())
        colbert_spec = CollectionSpec.for_encoder(self.colbert) if self.colbert is not None else None
        spec: AnySpec = HybridSpec(dense_spec, colbert_spec) if self.kind == "hybrid" else dense_spec or colbert_spec
        records = [
            Record(
                key,
                vectors[i] if vectors is not None else None,
                payload,
                token_vectors=tokens[i] if tokens is not None else None,
            )
            for i, (key, payload) in enumerate(zip(keys, payloads, strict=True))
        ]
        validate_records(records, spec)
        return spec, records

    def _search_options(self, query: str, filter: FilterSpec, kwargs: dict[str, Any]) -> int:
        """Check a text search's arguments before anything is encoded; return the prefetch."""
        check_query(query)
        prefetch = kwargs.pop("prefetch", self.prefetch)
        _no_options("similarity_search", kwargs)
        parse_filter(filter)
        return prefetch

    def _dense_only(self, method: str, filter: FilterSpec, kwargs: dict[str, Any]) -> None:
        _no_options(method, kwargs)
        if self.kind != "dense":
            raise ValueError(f"{method} searches dense stores; this is a {self.kind} store (search with text)")
        parse_filter(filter)

    def _mmr_supported(self) -> None:
        if self.embedding is None:
            raise NotImplementedError(
                "max_marginal_relevance_search needs dense vectors for diversity; a multivector store has none"
            )

    def _search(self, run_async: bool, vector: Any, tokens: Any, k: int, filter: FilterSpec, prefetch: int) -> Any:
        """``store.search`` (or the awaitable ``store.asearch``) with the arguments of its kind."""
        kind, query = StoreKind.of(self.store), EncodedQuery(vector, tokens)
        return (kind.asearch if run_async else kind.search)(self.store, query, k, filter, prefetch)

    def _scored(self, hits: list[Hit]) -> list[tuple[Document, float]]:
        return [(self._document(hit), hit.score) for hit in hits]

    def _document(self, hit: Hit) -> Document:
        """The LangChain document of a stored record: its text, the rest of its payload as metadata."""
        text = hit_text(hit, self.text_field, self.store.uri)
        metadata = {name: value for name, value in hit.payload.items() if name != self.text_field}
        return Document(id=hit.key, page_content=text, metadata=metadata)


def _required_store(store: Store | str | None) -> Store | str:
    if store is None:
        raise TypeError("from_texts / from_documents need store= (a store URI such as 'qdrant+edge://./index/docs')")
    return store


def _key(key: Any, where: str) -> str:
    """A document id as the store's key: a non-empty string."""
    if not isinstance(key, str) or not key:
        raise InvalidRecordError(f"{where} is {key!r}; ids must be non-empty strings; nothing written")
    return key


def _delete_keys(ids: list[str] | None) -> list[str]:
    if ids is None:
        raise ValueError("delete needs ids= (the documents' ids); it never deletes the whole collection")
    return [_key(key, f"ids[{i}]") for i, key in enumerate(ids)]


def _no_options(method: str, kwargs: dict[str, Any]) -> None:
    if kwargs:
        raise TypeError(f"LFMVectorStore.{method} got unexpected arguments {sorted(kwargs)}")


def _mmr(
    query: Sequence[float], candidates: list[Document], vectors: list[list[float]], k: int, lambda_mult: float
) -> list[Document]:
    chosen = maximal_marginal_relevance(np.asarray(query, dtype=np.float32), vectors, lambda_mult=lambda_mult, k=k)
    return [candidates[i] for i in chosen]

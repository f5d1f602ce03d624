"""LFMRetriever over the project's stores (dense, multivector, hybrid) and the LFMColBERTRerank postprocessor."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import numpy as np
import pytest
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from llamaindex_helpers import catalog_nodes, catalog_rows, clear_queries, row_key, row_payload

from lfm_retrieval import ColBERTEncoder, DenseEncoder, InvalidTextError, rerank
from lfm_retrieval.errors import CollectionMismatchError, InvalidFilterError
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, Store, open_store
from lfm_retrieval.testing import build_dense_checkpoint, build_minilm_colbert
from llama_index.postprocessor.lfm import LFMColBERTRerank
from llama_index.retrievers.lfm import LFMRetriever, to_portable_filter

QUERIES = ["waterproof speaker for the pool", "Kopfhörer mit Geräuschunterdrückung", "cordless drill"]


@pytest.fixture(scope="module")
def colbert(colbert_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder(str(colbert_path), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return catalog_rows("en")[:12] + catalog_rows("de")[:8]


def filled_store(kind: str, rows: list[dict], dense: DenseEncoder, colbert: ColBERTEncoder) -> Store:
    store = open_store(f"memory://llamaindex-{kind}-{uuid.uuid4().hex[:8]}", kind=kind)
    texts = [row["title"] for row in rows]
    vectors = dense.encode_documents(texts) if kind != "multivector" else [None] * len(rows)
    tokens = colbert.encode_documents(texts) if kind != "dense" else [None] * len(rows)
    spec = {
        "dense": lambda: CollectionSpec.for_encoder(dense),
        "multivector": lambda: CollectionSpec.for_encoder(colbert),
        "hybrid": lambda: HybridSpec.for_encoders(dense, colbert),
    }[kind]()
    store.ensure_collection(spec)
    store.upsert(
        Record(row_key(row), vector, row_payload(row) | {"text": row["title"]}, token_vectors=token)
        for row, vector, token in zip(rows, vectors, tokens, strict=True)
    )
    return store


@pytest.fixture(scope="module")
def stores(rows: list[dict], dense: DenseEncoder, colbert: ColBERTEncoder) -> dict[str, Store]:
    return {kind: filled_store(kind, rows, dense, colbert) for kind in ("dense", "multivector", "hybrid")}


def direct_search(store: Store, query: str, dense: DenseEncoder, colbert: ColBERTEncoder, k: int, filter=None):
    if store.kind == "dense":
        return store.search(dense.encode_queries([query])[0], k, filter)
    if store.kind == "multivector":
        return store.search(colbert.encode_queries([query])[0], k, filter)
    return store.search(dense.encode_queries([query])[0], colbert.encode_queries([query])[0], k, filter, prefetch=8)


@pytest.mark.parametrize("kind", ["dense", "multivector", "hybrid"])
def test_retriever_equals_the_store_searched_directly(
    kind: str, stores: dict[str, Store], dense: DenseEncoder, colbert: ColBERTEncoder
) -> None:
    store = stores[kind]
    retriever = LFMRetriever(store, embed_model=dense, colbert=colbert, similarity_top_k=5, prefetch=8)
    for query in QUERIES:
        hits = direct_search(store, query, dense, colbert, 5)
        nodes = retriever.retrieve(query)
        assert [n.node.node_id for n in nodes] == [hit.key for hit in hits]
        assert [n.score for n in nodes] == [hit.score for hit in hits]
        for node, hit in zip(nodes, hits, strict=True):
            assert isinstance(node.node, TextNode)
            assert node.node.text == hit.payload["text"] and node.node.metadata == hit.payload
            assert node.node.get_content(MetadataMode.EMBED) == hit.payload["text"]  # rerankers see only the text
            assert "text" not in node.node.get_metadata_str(MetadataMode.LLM)  # not repeated for the LLM
        anodes = asyncio.run(retriever.aretrieve(QueryBundle(query)))
        assert [(n.node.node_id, n.score) for n in anodes] == [(n.node.node_id, n.score) for n in nodes]


@pytest.mark.parametrize("kind", ["dense", "multivector", "hybrid"])
def test_filters_portable_and_llamaindex_forms(
    kind: str, stores: dict[str, Store], dense: DenseEncoder, colbert: ColBERTEncoder
) -> None:
    store = stores[kind]
    portable = {"locale": "de", "price": {"lte": 100}}
    metadata_filters = MetadataFilters(
        filters=[
            MetadataFilter(key="locale", value="de"),
            MetadataFilter(key="price", value=100.0, operator=FilterOperator.LTE),
        ]
    )
    hits = direct_search(store, QUERIES[1], dense, colbert, 10, portable)
    assert hits and all(h.payload["locale"] == "de" and h.payload["price"] <= 100 for h in hits)
    for filters in (portable, metadata_filters):
        retriever = LFMRetriever(
            store, embed_model=dense, colbert=colbert, similarity_top_k=10, prefetch=8, filters=filters
        )
        assert [(n.node.node_id, n.score) for n in retriever.retrieve(QUERIES[1])] == [(h.key, h.score) for h in hits]


def test_metadata_filters_translation() -> None:
    nested = MetadataFilters(
        filters=[
            MetadataFilter(key="brand", value="acme"),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="price", value=10, operator=FilterOperator.GT),
                    MetadataFilter(key="locale", value=["en", "de"], operator=FilterOperator.IN),
                ],
                condition="or",
            ),
        ]
    )
    assert to_portable_filter(nested) == {
        "$and": [{"brand": "acme"}, {"$or": [{"price": {"gt": 10}}, {"locale": {"in": ["en", "de"]}}]}]
    }
    negations = MetadataFilters(
        filters=[
            MetadataFilter(key="a", value=1, operator=FilterOperator.NE),
            MetadataFilter(key="b", value="x", operator=FilterOperator.NIN),
        ]
    )
    assert to_portable_filter(negations) == {"$and": [{"a": {"ne": 1}}, {"b": {"nin": ["x"]}}]}
    none_of = MetadataFilters(
        filters=[MetadataFilter(key="a", value=1), MetadataFilter(key="b", value=2)], condition="not"
    )
    assert to_portable_filter(none_of) == {"$not": {"$or": [{"a": 1}, {"b": 2}]}}
    with pytest.raises(InvalidFilterError, match="'text_match'"):
        to_portable_filter(
            MetadataFilters(filters=[MetadataFilter(key="a", value="x", operator=FilterOperator.TEXT_MATCH)])
        )


def test_retriever_from_uri_and_qdrant_local(rows: list[dict], dense: DenseEncoder, tmp_path: Path) -> None:
    """A URI opens the store (and the retriever closes it); the embedded Qdrant gives what memory gives."""
    pytest.importorskip("lfm_retrieval_qdrant")
    texts = [row["title"] for row in rows]
    vectors = dense.encode_documents(texts)
    records = [Record(row_key(r), v, row_payload(r) | {"text": r["title"]}) for r, v in zip(rows, vectors, strict=True)]
    uris = [f"memory://llamaindex-uri-{uuid.uuid4().hex[:8]}", f"qdrant+local://{tmp_path}/products"]
    results = []
    for uri in uris:
        with open_store(uri) as store:
            store.ensure_collection(CollectionSpec.for_encoder(dense))
            store.upsert(records)
        retriever = LFMRetriever(uri, kind="dense", embed_model=dense, similarity_top_k=4)
        results.append([(n.node.node_id, n.score) for n in retriever.retrieve(QUERIES[0])])
        retriever.close()
    assert [key for key, _ in results[0]] == [key for key, _ in results[1]]
    np.testing.assert_allclose([s for _, s in results[0]], [s for _, s in results[1]], atol=1e-5)


def test_retriever_bad_input(
    stores: dict[str, Store], dense: DenseEncoder, colbert: ColBERTEncoder, tmp_path: Path
) -> None:
    retriever = LFMRetriever(stores["hybrid"], embed_model=dense, colbert=colbert)
    for bad in ("", "   "):
        with pytest.raises(InvalidTextError, match="query is empty"):
            retriever.retrieve(bad)
        with pytest.raises(InvalidTextError, match="query is empty"):
            asyncio.run(retriever.aretrieve(bad))
    with pytest.raises(ValueError, match="is a dense store, not hybrid"):
        LFMRetriever(stores["dense"], kind="hybrid", embed_model=dense)
    with pytest.raises(ValueError, match="similarity_top_k"):
        LFMRetriever(stores["dense"], embed_model=dense, similarity_top_k=0)
    with pytest.raises(InvalidFilterError):
        LFMRetriever(stores["dense"], embed_model=dense, filters={"price": {"between": [1, 2]}})
    with pytest.raises(TypeError, match="Store or a URI"):
        LFMRetriever(object(), embed_model=dense)  # type: ignore[arg-type]
    # a collection written by another model (same dimension) is refused, naming both
    other = DenseEncoder(str(build_dense_checkpoint(tmp_path / "other-embedding")), device="cpu")
    with pytest.raises(CollectionMismatchError, match="other-embedding"):
        LFMRetriever(stores["dense"], embed_model=other).retrieve(QUERIES[0])


def test_a_missing_text_field_is_a_key_error_naming_the_fields(stores: dict[str, Store], dense: DenseEncoder) -> None:
    retriever = LFMRetriever(stores["dense"], embed_model=dense, similarity_top_k=2, text_field="description")
    with pytest.raises(KeyError, match=r"no 'description' field.*'sku'.*set text_field="):
        retriever.retrieve(QUERIES[0])


# -- LFMColBERTRerank ----------------------------------------------------------------------------------------------
def test_reranker_equals_core_maxsim(colbert: ColBERTEncoder, rows: list[dict]) -> None:
    nodes = [NodeWithScore(node=TextNode(id_=row_key(r), text=r["title"]), score=0.1 * i) for i, r in enumerate(rows)]
    reranker = LFMColBERTRerank(top_n=4, encoder=colbert, keep_retrieval_score=True)
    out = reranker.postprocess_nodes(nodes, query_str=QUERIES[0])
    expected = rerank(QUERIES[0], [r["title"] for r in rows], colbert, top_k=4)
    assert [n.node.node_id for n in out] == [row_key(rows[i]) for i, _ in expected]
    assert [n.score for n in out] == [score for _, score in expected]
    assert [n.node.metadata["retrieval_score"] for n in out] == [0.1 * i for i, _ in expected]
    assert all("retrieval_score" not in n.node.metadata for n in nodes)  # inputs untouched
    aout = asyncio.run(reranker.apostprocess_nodes(nodes, query_bundle=QueryBundle(QUERIES[0])))
    assert [(n.node.node_id, n.score) for n in aout] == [(n.node.node_id, n.score) for n in out]
    assert reranker.postprocess_nodes([], query_str=QUERIES[0]) == []


def test_reranker_bad_input(colbert: ColBERTEncoder) -> None:
    reranker = LFMColBERTRerank(encoder=colbert)
    nodes = [NodeWithScore(node=TextNode(id_="a", text="red scarf"), score=1.0)]
    with pytest.raises(ValueError, match="needs the query"):
        reranker.postprocess_nodes(nodes)
    with pytest.raises(InvalidTextError, match="query is empty"):
        reranker.postprocess_nodes(nodes, query_str="  ")
    blank = [*nodes, NodeWithScore(node=TextNode(id_="blank-node", text=" "), score=0.5)]
    with pytest.raises(InvalidTextError, match="blank-node"):
        reranker.postprocess_nodes(blank, query_str="scarf")


def test_reranker_with_real_weights_puts_the_right_product_first(minilm_path: Path, tmp_path: Path) -> None:
    """The MiniLM late-interaction stand-in (real weights) reranks first-stage candidates: each query's
    relevant products among six others."""
    stand_in = ColBERTEncoder(str(build_minilm_colbert(tmp_path / "minilm-colbert", minilm_path)), device="cpu")
    reranker = LFMColBERTRerank(top_n=3, encoder=stand_in)
    nodes = catalog_nodes()
    queries = clear_queries()
    for qid in ("q04", "q11", "q23"):
        text, relevant = queries[qid]
        others = [node for node in nodes if node.metadata["sku"] not in relevant][::11][:6]
        candidates = others[:3] + [node for node in nodes if node.metadata["sku"] in relevant] + others[3:]
        out = reranker.postprocess_nodes([NodeWithScore(node=node, score=0.0) for node in candidates], query_str=text)
        assert len(out) == 3 and out[0].node.metadata["sku"] in relevant, (qid, text, out[0].node.metadata["key"])

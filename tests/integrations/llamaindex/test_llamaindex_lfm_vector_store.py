"""LFMVectorStore: VectorStoreIndex over qdrant+edge:// and live pgvector (dense, ColBERT kinds); sides, bad input."""

from __future__ import annotations

import asyncio
import math
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pytest
from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.core.storage.kvstore import SimpleKVStore
from llama_index.core.vector_stores.types import (
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
    VectorStoreQueryMode,
)
from llamaindex_helpers import catalog_rows, clear_queries, row_key, row_text

from lfm_retrieval import ColBERTEncoder, DenseEncoder, cosine_scores
from lfm_retrieval.errors import CollectionMismatchError, InvalidFilterError, InvalidRecordError
from lfm_retrieval.search import search_text
from lfm_retrieval.stores import CollectionSpec, Record, matches, open_store, parse_filter
from llama_index.embeddings.lfm import LFMEmbedding
from llama_index.retrievers.lfm import LFMRetriever
from llama_index.vector_stores.lfm import LFMVectorStore

pytestmark = pytest.mark.one_stack  # both stacks pin the same store clients and llama-index-core (tests/conftest.py)
K = 3
QUERIES = ["waterproof speaker for the pool", "noise cancelling headphones", "cordless drill", "coffee grinder"]


def documents(rows: list[dict]) -> list[Document]:
    """One document per product, its key as the document id; only the text is embedded."""
    docs = []
    for row in rows:
        metadata = {"key": row_key(row), "sku": row["sku"], "locale": row["locale"], "price": row["price"]}
        docs.append(
            Document(
                id_=row_key(row),
                text=row_text(row),
                metadata=metadata,
                excluded_embed_metadata_keys=list(metadata),
                excluded_llm_metadata_keys=list(metadata),
            )
        )
    return docs


@pytest.fixture(scope="module")
def minilm_embed(minilm_path: Path) -> LFMEmbedding:
    return LFMEmbedding(str(minilm_path), device="cpu", embeddings_cache=SimpleKVStore())


@pytest.fixture(scope="module")
def colbert(colbert_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder(str(colbert_path), device="cpu", batch_size=8)


@pytest.fixture(scope="module")
def rows() -> list[dict]:
    return catalog_rows("en")


def with_table(dsn: str, table: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(query=urlencode(dict(parse_qsl(parts.query), table=table))))


@pytest.fixture(params=["qdrant+edge", "pgvector"])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[[str], str]]:
    """A URI factory for one store scheme: the same name gives the same collection."""
    if request.param == "qdrant+edge":
        yield lambda name: f"qdrant+edge://{tmp_path}/{name}"
        return
    dsn = request.getfixturevalue("postgres_dsn")
    run = uuid.uuid4().hex[:8]
    yield lambda name: with_table(dsn, f"li_{name}_{run}")


def exact_top(embed: LFMEmbedding | DenseEncoder, texts: dict[str, str], query: str, k: int, keep=lambda key: True):
    """(document key, cosine) of the exact top-k over the encoder's own document vectors."""
    encoder = embed.encoder if isinstance(embed, LFMEmbedding) else embed
    keys = [key for key in texts if keep(key)]
    scores = cosine_scores(encoder.encode_queries([query]), encoder.encode_documents([texts[k] for k in keys]))
    order = np.argsort(-scores[0], kind="stable")[:k]
    return [(keys[i], float(scores[0][i])) for i in order]


def retrieved(index: VectorStoreIndex, query: str, k: int, filters: MetadataFilters | None = None):
    results = index.as_retriever(similarity_top_k=k, filters=filters).retrieve(query)
    return [(r.node.ref_doc_id, r.score) for r in results]


def assert_same(got, expected) -> None:
    assert [key for key, _ in got] == [key for key, _ in expected]
    np.testing.assert_allclose([s for _, s in got], [s for _, s in expected], atol=1e-4)


def test_vector_store_index_insert_filter_delete_reopen(
    store_uri: Callable[[str], str], minilm_embed: LFMEmbedding, rows: list[dict]
) -> None:
    uri = store_uri("products")
    texts = {row_key(row): row_text(row) for row in rows}
    prices = {row_key(row): row["price"] for row in rows}
    vector_store = LFMVectorStore(uri, embed_model=minilm_embed)
    index = VectorStoreIndex.from_documents(
        documents(rows),
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=vector_store.embed_model,
    )
    assert vector_store.client.count() == len(rows)

    # retrieve: the right product first, and exactly the exact cosine top-K of the encoder's vectors
    for text, relevant in clear_queries().values():
        got = retrieved(index, text, K)
        assert got[0][0].split("/")[0] in relevant
        assert_same(got, exact_top(minilm_embed, texts, text, K))
    # retrieved nodes are the nodes that were added: text, metadata, source document
    node = index.as_retriever(similarity_top_k=1).retrieve(QUERIES[0])[0].node
    assert isinstance(node, TextNode) and node.text == texts[node.ref_doc_id]
    assert node.metadata == {"key": node.ref_doc_id, "sku": node.metadata["sku"], "locale": "en",
                             "price": prices[node.ref_doc_id]}  # fmt: skip
    assert node.get_content(MetadataMode.EMBED) == texts[node.ref_doc_id]

    # with MetadataFilters (and / or, ranges, membership)
    cheap = MetadataFilters(filters=[MetadataFilter(key="price", value=50.0, operator=FilterOperator.LTE)])
    got = retrieved(index, QUERIES[1], 5, cheap)
    assert got and all(prices[key] <= 50 for key, _ in got)
    assert_same(got, exact_top(minilm_embed, texts, QUERIES[1], 5, lambda key: prices[key] <= 50))
    # GTE: a stored price as the bound (it must be kept), the same records as the portable {"price": {"gte": ...}}
    floor = sorted(prices.values())[len(prices) // 2]
    at_least = MetadataFilters(filters=[MetadataFilter(key="price", value=floor, operator=FilterOperator.GTE)])
    portable = parse_filter({"price": {"gte": floor}})
    selected = {r.payload["key"] for r in vector_store.client.scan() if matches(portable, r.payload)}
    assert selected == {key for key, price in prices.items() if price >= floor}
    assert floor in {prices[key] for key in selected}  # the bound itself is kept
    # every record it selects, in the order and with the scores of the unfiltered search
    got = retrieved(index, QUERIES[0], len(rows), at_least)
    assert {key for key, _ in got} == selected
    assert_same(got, [(key, score) for key, score in retrieved(index, QUERIES[0], len(rows)) if key in selected])
    wanted = sorted(texts)[:6]
    either = MetadataFilters(
        filters=[
            MetadataFilter(key="key", value=wanted[:3], operator=FilterOperator.IN),
            MetadataFilters(
                filters=[
                    MetadataFilter(key="key", value=wanted[3:], operator=FilterOperator.IN),
                    MetadataFilter(key="price", value=0.0, operator=FilterOperator.GT),
                ]
            ),
        ],
        condition="or",
    )
    assert_same(
        retrieved(index, QUERIES[2], 10, either), exact_top(minilm_embed, texts, QUERIES[2], 10, wanted.__contains__)
    )
    # negations: != and nin, the `not` condition (none holds), and a field no node has (every node matches)
    unwanted = MetadataFilters(
        filters=[
            MetadataFilter(key="key", value=wanted[0], operator=FilterOperator.NE),
            MetadataFilter(key="key", value=wanted[1:4], operator=FilterOperator.NIN),
        ]
    )
    assert_same(
        retrieved(index, QUERIES[2], 10, unwanted),
        exact_top(minilm_embed, texts, QUERIES[2], 10, lambda key: key not in wanted[:4]),
    )
    none_of = MetadataFilters(
        filters=[
            MetadataFilter(key="price", value=50.0, operator=FilterOperator.LTE),
            MetadataFilter(key="key", value=wanted[:2], operator=FilterOperator.IN),
        ],
        condition="not",
    )
    assert_same(
        retrieved(index, QUERIES[1], 5, none_of),
        exact_top(minilm_embed, texts, QUERIES[1], 5, lambda key: prices[key] > 50 and key not in wanted[:2]),
    )
    absent = MetadataFilters(filters=[MetadataFilter(key="colour", value=["red"], operator=FilterOperator.NIN)])
    assert_same(retrieved(index, QUERIES[0], K, absent), exact_top(minilm_embed, texts, QUERIES[0], K))

    # delete_ref_doc removes the document's nodes; the rest stays
    gone = retrieved(index, QUERIES[0], 1)[0][0]
    index.delete_ref_doc(gone)
    assert vector_store.client.count() == len(rows) - 1
    remaining = {key: text for key, text in texts.items() if key != gone}
    expected = {query: exact_top(minilm_embed, remaining, query, K) for query in QUERIES}
    assert_same(retrieved(index, QUERIES[0], K), expected[QUERIES[0]])

    # re-open from the store alone (a new process would do the same) and retrieve again
    vector_store.close()
    reopened = LFMVectorStore(uri, embed_model=minilm_embed)
    try:
        again = VectorStoreIndex.from_vector_store(reopened, embed_model=reopened.embed_model)
        for query in QUERIES:
            assert_same(retrieved(again, query, K), expected[query])
        some = sorted(remaining)[::3]
        only = again.as_retriever(similarity_top_k=K, doc_ids=some).retrieve(QUERIES[3])
        assert_same(
            [(r.node.ref_doc_id, r.score) for r in only],
            exact_top(minilm_embed, remaining, QUERIES[3], K, some.__contains__),
        )
        results = asyncio.run(again.as_retriever(similarity_top_k=K).aretrieve(QUERIES[1]))
        assert_same([(r.node.ref_doc_id, r.score) for r in results], expected[QUERIES[1]])
    finally:
        reopened.close()


def test_query_side_for_queries_document_side_for_nodes(dense: DenseEncoder, tmp_path: Path) -> None:
    """With the LFM2.5 layout's prompts the sides differ: stored vectors are documents', queries are queries'."""
    texts = [row_text(row) for row in catalog_rows("en")[:16]]
    nodes = [TextNode(text=text, id_=f"n{i}") for i, text in enumerate(texts)]
    vector_store = LFMVectorStore(f"qdrant+edge://{tmp_path}/sides", embed_model=dense)
    try:
        index = VectorStoreIndex(
            nodes,
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=vector_store.embed_model,
        )
        stored = {record.key: np.asarray(record.vector) for record in vector_store.client.scan()}
        documents_side = dense.encode_documents(texts)
        matrix = np.stack([stored[node.node_id] for node in nodes])
        np.testing.assert_allclose(matrix, documents_side, atol=1e-5)
        assert not np.allclose(matrix, dense.encode_queries(texts), atol=1e-3)  # the sides do differ here

        query = QUERIES[0]
        scores = documents_side @ dense.encode_queries([query])[0]
        order = np.argsort(-scores, kind="stable")[:5]
        results = index.as_retriever(similarity_top_k=5).retrieve(query)
        assert [r.node.node_id for r in results] == [nodes[i].node_id for i in order]
        np.testing.assert_allclose([r.score for r in results], scores[order], atol=1e-4)
        # a precomputed embedding without text is searched as given
        by_vector = vector_store.query(
            VectorStoreQuery(query_embedding=dense.encode_queries([query])[0].tolist(), similarity_top_k=5)
        )
        assert by_vector.ids == [r.node.node_id for r in results]
        # nodes added without an embedding are encoded here, on the document side
        vector_store.add([TextNode(text="a brand new kettle", id_="fresh")])
        stored = {record.key: np.asarray(record.vector) for record in vector_store.client.scan()}
        np.testing.assert_allclose(stored["fresh"], dense.encode_documents(["a brand new kettle"])[0], atol=1e-5)
        # async add and query
        asyncio.run(vector_store.async_add([TextNode(text="a quiet fan", id_="fan")]))
        stored = {record.key: np.asarray(record.vector) for record in vector_store.client.scan()}
        np.testing.assert_allclose(stored["fan"], dense.encode_documents(["a quiet fan"])[0], atol=1e-5)
        query_all = VectorStoreQuery(query_str=query, similarity_top_k=len(stored))
        result = asyncio.run(vector_store.aquery(query_all))
        assert result.ids == vector_store.query(query_all).ids and {"fan", "fresh"} <= set(result.ids)
        assert result.similarities == vector_store.query(query_all).similarities
    finally:
        vector_store.close()


@pytest.mark.parametrize("scheme", ["qdrant+edge", "postgresql"])
@pytest.mark.parametrize("kind", ["hybrid", "multivector"])
def test_colbert_kinds_equal_search_text_on_the_same_store(
    kind: str,
    scheme: str,
    dense: DenseEncoder,
    colbert: ColBERTEncoder,
    rows: list[dict],
    request: pytest.FixtureRequest,
    tmp_path: Path,
) -> None:
    """Through VectorStoreIndex, the same hits as ``search_text`` on a fresh Qdrant Edge collection or
    PostgreSQL table of each ColBERT kind (the first 40 English products)."""
    if scheme == "qdrant+edge":
        uri = f"qdrant+edge://{tmp_path}/{kind}"
    else:
        pytest.importorskip("lfm_retrieval_pgvector")
        uri = with_table(request.getfixturevalue("postgres_dsn"), f"li_{kind}_{uuid.uuid4().hex[:8]}")
    rows = rows[:40]
    vector_store = LFMVectorStore(uri, kind=kind, embed_model=dense, colbert=colbert, prefetch=20)
    try:
        index = VectorStoreIndex.from_documents(
            documents(rows),
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=vector_store.embed_model,  # multivector: a constant mock (node vectors are not used)
        )
        store = vector_store.client
        encoders = {"dense": dense if kind == "hybrid" else None, "colbert": colbert}
        for query in QUERIES:
            hits = search_text(store, query, **encoders, k=10, prefetch=20)
            assert len(hits) == 10
            results = index.as_retriever(similarity_top_k=10).retrieve(query)
            assert [r.node.node_id for r in results] == [hit.key for hit in hits]
            assert [r.score for r in results] == [hit.score for hit in hits]
            result = asyncio.run(vector_store.aquery(VectorStoreQuery(query_str=query, similarity_top_k=10)))
            assert result.ids == [hit.key for hit in hits]
        # the token vectors stored are the encoder's document side of each node's text
        record = next(iter(store.scan()))
        tokens = colbert.encode_documents([record.payload["text"]])[0]
        np.testing.assert_allclose(record.token_vectors, tokens, atol=1e-5)
        # delete by source document works for this kind too
        index.delete_ref_doc(row_key(rows[0]))
        assert store.count() == len(rows) - 1
    finally:
        vector_store.close()


def test_bad_input_refuses_the_whole_call(
    minilm_embed: LFMEmbedding, dense: DenseEncoder, colbert: ColBERTEncoder, tmp_path: Path
) -> None:
    uri = f"qdrant+edge://{tmp_path}/bad"
    vector_store = LFMVectorStore(uri, embed_model=minilm_embed)
    good = [
        TextNode(text=row_text(row), id_=row_key(row), metadata={"sku": row["sku"]}) for row in catalog_rows("en")[:4]
    ]
    vector_store.add(good)
    store = vector_store.client
    before = {record.key: np.asarray(record.vector) for record in store.scan()}

    def unchanged() -> None:
        after = {record.key: np.asarray(record.vector) for record in store.scan()}
        assert after.keys() == before.keys()
        for key in before:
            np.testing.assert_array_equal(after[key], before[key])

    vector = minilm_embed.get_text_embedding("fine")
    nan = TextNode(text="broken", id_="nan", embedding=[math.nan] * len(vector))
    short = TextNode(text="short", id_="short", embedding=vector[:10])
    for bad in (nan, short):
        with pytest.raises(InvalidRecordError, match=bad.node_id):
            vector_store.add([TextNode(text="new", id_="new"), good[0], bad])
        unchanged()
    nested = TextNode(text="nested", id_="nested", metadata={"attributes": {"colour": "red"}})
    with pytest.raises(InvalidRecordError, match="nested"):
        vector_store.add([TextNode(text="new", id_="new"), nested])
    clash = TextNode(text="clash", id_="clash", metadata={"text": "another text"})
    with pytest.raises(InvalidRecordError, match="text_field"):
        vector_store.add([clash])
    # vectors from another model (the index's embed_model is not the store's): refused, nothing written
    other = MockEmbedding(embed_dim=len(vector))
    with pytest.raises(CollectionMismatchError, match=r"embed_model=vector_store\.embed_model"):
        VectorStoreIndex(
            [TextNode(text="other", id_="other")],
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=other,
        )
    unchanged()

    # filters the portable form cannot express are refused naming the operator, before searching or deleting
    for operator, name in ((FilterOperator.TEXT_MATCH, "'text_match'"), (FilterOperator.CONTAINS, "'contains'")):
        filters = MetadataFilters(filters=[MetadataFilter(key="sku", value="x", operator=operator)])
        with pytest.raises(InvalidFilterError, match=name):
            vector_store.query(VectorStoreQuery(query_str="headphones", similarity_top_k=2, filters=filters))
        with pytest.raises(InvalidFilterError, match=name):
            vector_store.delete_nodes(filters=filters)
        unchanged()
    empty_group = MetadataFilters(
        filters=[MetadataFilter(key="sku", value=good[1].metadata["sku"]), MetadataFilters(filters=[])]
    )
    result = vector_store.query(VectorStoreQuery(query_str="headphones", similarity_top_k=2, filters=empty_group))
    assert result.ids == [good[1].node_id]
    with pytest.raises(ValueError, match="'mmr'"):
        vector_store.query(VectorStoreQuery(query_str="headphones", mode=VectorStoreQueryMode.MMR))
    with pytest.raises(ValueError, match="node_ids"):
        vector_store.query(VectorStoreQuery(query_str="headphones", node_ids=["x"]))
    vector_store.close()

    # the collection records its model: another model is refused before anything is written or searched
    with pytest.raises(CollectionMismatchError, match=f"holds vectors of '{minilm_embed.encoder.model_id}'"):
        LFMVectorStore(uri, embed_model=dense)
    with pytest.raises(CollectionMismatchError, match="kind='dense'"):
        LFMVectorStore(uri, kind="hybrid", embed_model=minilm_embed, colbert=colbert)
    reopened = LFMVectorStore(uri, embed_model=minilm_embed)
    try:
        assert sorted(record.key for record in reopened.client.scan()) == sorted(before)
    finally:
        reopened.close()


def test_delete_nodes_and_clear(dense: DenseEncoder) -> None:
    vector_store = LFMVectorStore(f"memory://li-delete-{uuid.uuid4().hex[:8]}", embed_model=dense)
    nodes = [
        TextNode(text=row_text(row), id_=row_key(row), metadata={"price": row["price"]})
        for row in catalog_rows("en")[:10]
    ]
    vector_store.add(nodes)
    vector_store.delete_nodes(node_ids=[nodes[0].node_id])
    assert vector_store.client.count() == 9
    limit = sorted(node.metadata["price"] for node in nodes[1:])[4]
    vector_store.delete_nodes(
        filters=MetadataFilters(filters=[MetadataFilter(key="price", value=limit, operator=FilterOperator.LTE)])
    )
    assert vector_store.client.count() == sum(node.metadata["price"] > limit for node in nodes[1:])
    with pytest.raises(ValueError, match="node_ids or filters"):
        vector_store.delete_nodes()
    vector_store.clear()
    assert vector_store.client.count() == 0


def test_records_written_outside_llamaindex_read_as_text_nodes(dense: DenseEncoder) -> None:
    """A collection filled by the project's own API (catalog job, upsert) is queried as TextNodes of its payload."""
    store = open_store(f"memory://li-outside-{uuid.uuid4().hex[:8]}")
    store.ensure_collection(CollectionSpec.for_encoder(dense))
    rows = catalog_rows("en")[:8]
    vectors = dense.encode_documents([row_text(row) for row in rows])
    store.upsert(
        Record(row_key(row), vector, {"text": row_text(row), "sku": row["sku"]})
        for row, vector in zip(rows, vectors, strict=True)
    )
    vector_store = LFMVectorStore(store, embed_model=dense)
    result = vector_store.query(VectorStoreQuery(query_str=QUERIES[1], similarity_top_k=3))
    retriever = LFMRetriever(store, embed_model=dense, similarity_top_k=3)
    assert result.ids == [n.node.node_id for n in retriever.retrieve(QUERIES[1])]
    assert [node.text for node in result.nodes] == [n.node.text for n in retriever.retrieve(QUERIES[1])]


@pytest.mark.parametrize("scheme", ["memory", "qdrant+local", "milvus+lite"])
def test_other_dense_schemes_round_trip(scheme: str, dense: DenseEncoder, tmp_path: Path) -> None:
    """The same index life (insert, filtered retrieval, delete_ref_doc, reopen) on the other embedded stores."""
    if scheme == "milvus+lite":
        pytest.importorskip("milvus_lite")
    uri = {
        "memory": f"memory://li-{uuid.uuid4().hex[:8]}",
        "qdrant+local": f"qdrant+local://{tmp_path}/qdrant/products",
        "milvus+lite": f"milvus+lite://{tmp_path}/lite.db/products",
    }[scheme]
    rows = catalog_rows("en")[:20]
    texts = {row_key(row): row_text(row) for row in rows}
    prices = {row_key(row): row["price"] for row in rows}
    vector_store = LFMVectorStore(uri, embed_model=dense)
    index = VectorStoreIndex.from_documents(
        documents(rows),
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=vector_store.embed_model,
    )
    limit = sorted(prices.values())[10]
    cheap = MetadataFilters(filters=[MetadataFilter(key="price", value=limit, operator=FilterOperator.LT)])
    assert_same(retrieved(index, QUERIES[0], 5), exact_top(dense, texts, QUERIES[0], 5))
    assert_same(
        retrieved(index, QUERIES[1], 5, cheap), exact_top(dense, texts, QUERIES[1], 5, lambda k: prices[k] < limit)
    )
    gone = retrieved(index, QUERIES[2], 1)[0][0]
    index.delete_ref_doc(gone)
    del texts[gone]
    vector_store.close()
    reopened = LFMVectorStore(uri, embed_model=dense)
    try:
        assert reopened.client.count() == len(rows) - 1
        again = VectorStoreIndex.from_vector_store(reopened, embed_model=reopened.embed_model)
        assert_same(retrieved(again, QUERIES[2], 5), exact_top(dense, texts, QUERIES[2], 5))
    finally:
        reopened.close()

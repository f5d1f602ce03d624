"""LFMVectorStore (multivector) on plaid://: a VectorStoreIndex inserts, retrieves the same hits as
search_text on the same store, deletes by source document and re-opens from the store.
pylate / fast-plaid exist only in the ``full`` stack: elsewhere this module skips."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("pylate")
pytest.importorskip("fast_plaid")

from llama_index.core import Document, StorageContext, VectorStoreIndex
from llama_index.core.vector_stores.types import MetadataFilter, MetadataFilters
from llamaindex_helpers import catalog_rows, row_key, row_text

from lfm_retrieval import ColBERTEncoder
from lfm_retrieval.search import search_text
from llama_index.vector_stores.lfm import LFMVectorStore

QUERIES = ["waterproof speaker for the pool", "noise cancelling headphones", "cordless drill"]


def documents(rows: list[dict]) -> list[Document]:
    """One document per product, its key as the document id; only the text is embedded."""
    docs = []
    for row in rows:
        metadata = {"sku": row["sku"], "price": row["price"]}
        docs.append(
            Document(
                id_=row_key(row), text=row_text(row), metadata=metadata, excluded_embed_metadata_keys=list(metadata)
            )
        )
    return docs


def assert_equals_search_text(index: VectorStoreIndex, vector_store: LFMVectorStore, colbert: ColBERTEncoder) -> None:
    for query in QUERIES:
        hits = search_text(vector_store.client, query, colbert=colbert, k=10)
        assert len(hits) == 10
        results = index.as_retriever(similarity_top_k=10).retrieve(query)
        assert [r.node.node_id for r in results] == [hit.key for hit in hits]
        assert [r.score for r in results] == [hit.score for hit in hits]
        assert [r.node.get_content() for r in results] == [hit.payload["text"] for hit in hits]


def test_plaid_multivector_index_round_trip(colbert_path: Path, tmp_path: Path) -> None:
    colbert = ColBERTEncoder(str(colbert_path), device="cpu", batch_size=8)
    rows = catalog_rows("en")
    uri = f"plaid://{tmp_path}/li_plaid"
    vector_store = LFMVectorStore(uri, kind="multivector", colbert=colbert)
    try:
        index = VectorStoreIndex.from_documents(
            documents(rows),
            storage_context=StorageContext.from_defaults(vector_store=vector_store),
            embed_model=vector_store.embed_model,  # a constant mock: a multivector store encodes nodes itself
        )
        assert vector_store.client.count() == len(rows)
        assert_equals_search_text(index, vector_store, colbert)
        # a document's own document-side tokens find it, with MaxSim = its token count (unit vectors)
        tokens = colbert.encode_documents([row_text(rows[0])])[0]
        hit = vector_store.client.search(tokens, k=1)[0]
        assert hit.payload["text"] == row_text(rows[0])
        assert hit.score == pytest.approx(len(tokens), rel=1e-4)
        cheap = MetadataFilters(filters=[MetadataFilter(key="price", value=100, operator="<")])
        found = index.as_retriever(similarity_top_k=5, filters=cheap).retrieve(QUERIES[0])
        assert found and all(r.node.metadata["price"] < 100 for r in found)
        index.delete_ref_doc(row_key(rows[0]))
        assert vector_store.client.count() == len(rows) - 1
    finally:
        vector_store.close()
    reopened = LFMVectorStore(uri, kind="multivector", colbert=colbert)
    try:
        assert reopened.client.count() == len(rows) - 1
        index = VectorStoreIndex.from_vector_store(reopened, embed_model=reopened.embed_model)
        assert_equals_search_text(index, reopened, colbert)
        assert row_key(rows[0]) not in [
            r.node.ref_doc_id for r in index.as_retriever(similarity_top_k=len(rows)).retrieve(row_text(rows[0]))
        ]
    finally:
        reopened.close()

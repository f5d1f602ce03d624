"""The sample catalog in Qdrant's embedded engine through LlamaIndex's own API: LFMVectorStore, dense and hybrid.

    python examples/llamaindex_vectorstore.py                              # LFM2.5 models from the Hugging Face Hub
    python examples/llamaindex_vectorstore.py --model DIR --colbert DIR    # local copies (no network)
    python examples/llamaindex_vectorstore.py --offline                    # real MiniLM + a MiniLM ColBERT stand-in

Needs `pip install llama-index-lfm lfm-retrieval-qdrant[edge]`. No LLM is used: only retrieval.
Run it twice with the same --path: the second run finds the collections and only reopens them.
"""

from __future__ import annotations

import argparse
import tempfile

from llama_index.core import Document, Settings, StorageContext, VectorStoreIndex
from llama_index.core.vector_stores.types import FilterOperator, MetadataFilter, MetadataFilters
from sample_setup import add_model_options, catalog_entries, chosen_models, show_nodes

from lfm_retrieval import ColBERTEncoder
from llama_index.embeddings.lfm import LFMEmbedding
from llama_index.vector_stores.lfm import LFMVectorStore

QUERIES = ["noise cancelling headphones for flights", "Kaffeemühle manuell", "speaker i can take to the pool"]


def load_documents(locales: set[str] | None, limit: int | None) -> list[Document]:
    """One document per catalog record, its key as the document id; only the text is embedded."""
    documents = []
    for key, text, metadata in catalog_entries(locales):
        # embed the text only
        documents.append(Document(id_=key, text=text, metadata=metadata, excluded_embed_metadata_keys=list(metadata)))
    return documents[:limit]


def open_index(vector_store: LFMVectorStore, documents: list[Document]) -> VectorStoreIndex:
    """Index the documents into an empty store; a store that already holds them is only reopened."""
    if vector_store.client.count():
        return VectorStoreIndex.from_vector_store(vector_store, embed_model=vector_store.embed_model)
    return VectorStoreIndex.from_documents(
        documents,
        storage_context=StorageContext.from_defaults(vector_store=vector_store),
        embed_model=vector_store.embed_model,  # nodes: document side, by the model the store records
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("--path", default=None, help="folder of the embedded Qdrant shards (default: a temp dir)")
    parser.add_argument("--locales", default="", help="comma-separated locales to index ('' = all)")
    parser.add_argument("--limit", type=int, default=None, help="index at most this many records")
    parser.add_argument("--query", action="append", help="a query (repeatable); default: three sample queries")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()
    args.model, args.colbert = chosen_models(args)
    path = args.path or tempfile.mkdtemp(prefix="lfm-llamaindex-")

    Settings.llm = None  # retrieval only: never reach for an LLM (LlamaIndex's default is OpenAI)
    embed_model = LFMEmbedding(args.model)
    colbert = ColBERTEncoder(args.colbert)
    documents = load_documents(set(filter(None, args.locales.split(","))), args.limit)
    queries = args.query or QUERIES
    cheap = MetadataFilters(filters=[MetadataFilter(key="price", value=50.0, operator=FilterOperator.LTE)])

    dense_store = LFMVectorStore(f"qdrant+edge://{path}/products", embed_model=embed_model)
    hybrid_store = LFMVectorStore(
        f"qdrant+edge://{path}/products-hybrid", kind="hybrid", embed_model=embed_model, colbert=colbert
    )
    try:
        dense_index = open_index(dense_store, documents)
        hybrid_index = open_index(hybrid_store, documents)
        print(f"{dense_store.client.count()} records in {dense_store.uri} (dense, {args.model})")
        print(f"{hybrid_store.client.count()} records in {hybrid_store.uri} (hybrid: dense prefetch, ColBERT MaxSim)")

        for query in queries:
            print(f"\nquery: {query}")
            show_nodes("dense:", dense_index.as_retriever(similarity_top_k=args.k).retrieve(query))
            show_nodes(
                "dense, price <= 50:", dense_index.as_retriever(similarity_top_k=args.k, filters=cheap).retrieve(query)
            )
            show_nodes("hybrid:", hybrid_index.as_retriever(similarity_top_k=args.k).retrieve(query))
    finally:
        dense_store.close()
        hybrid_store.close()


if __name__ == "__main__":
    main()

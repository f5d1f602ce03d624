"""LlamaIndex over the sample catalog: VectorStoreIndex + LFMEmbedding, LFMRetriever on a hybrid store, ColBERT rerank.

    python examples/llamaindex_retriever.py                                # LFM2.5 models from the Hugging Face Hub
    python examples/llamaindex_retriever.py --model DIR --colbert DIR      # local copies (no network)
    python examples/llamaindex_retriever.py --offline                      # real MiniLM + a MiniLM ColBERT stand-in

Needs `pip install llama-index-lfm` (integrations/llamaindex). No LLM is used: only retrieval.
"""

from __future__ import annotations

import argparse

from llama_index.core import Settings, VectorStoreIndex
from llama_index.core.schema import TextNode
from sample_setup import add_model_options, catalog_entries, chosen_models, show_nodes

from lfm_retrieval import ColBERTEncoder
from lfm_retrieval.stores import HybridSpec, Record, open_store, stable_id
from llama_index.embeddings.lfm import LFMEmbedding
from llama_index.postprocessor.lfm import LFMColBERTRerank
from llama_index.retrievers.lfm import LFMRetriever

QUERIES = ["noise cancelling headphones for flights", "Kaffeemühle manuell", "speaker i can take to the pool"]


def load_nodes(locales: set[str] | None, limit: int | None) -> list[TextNode]:
    """One node per catalog record; the embedded text is title, category and description."""
    nodes = []
    for key, text, metadata in catalog_entries(locales):
        # embed the text only
        nodes.append(
            TextNode(id_=stable_id(key), text=text, metadata=metadata, excluded_embed_metadata_keys=list(metadata))
        )
    return nodes[:limit]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("--store", default="memory://llamaindex-example", help="store URI for LFMRetriever (hybrid)")
    parser.add_argument("--locales", default="en,de", help="comma-separated locales to index ('' = all)")
    parser.add_argument("--limit", type=int, default=None, help="index at most this many records")
    parser.add_argument("--query", action="append", help="a query (repeatable); default: three sample queries")
    parser.add_argument("--k", type=int, default=3)
    args = parser.parse_args()
    args.model, args.colbert = chosen_models(args)

    Settings.llm = None  # retrieval only: never reach for an LLM (LlamaIndex's default is OpenAI)
    embed_model = LFMEmbedding(args.model)  # text methods: document side; query methods: query side
    Settings.embed_model = embed_model
    colbert = ColBERTEncoder(args.colbert)
    reranker = LFMColBERTRerank(top_n=args.k, encoder=colbert)
    nodes = load_nodes(set(filter(None, args.locales.split(","))), args.limit)
    queries = args.query or QUERIES

    # 1. LlamaIndex's own VectorStoreIndex (in-memory SimpleVectorStore), embedded with LFMEmbedding
    index = VectorStoreIndex(nodes, embed_model=embed_model)
    print(f"indexed {len(nodes)} records with {args.model} ({embed_model.dimension}-d) in a VectorStoreIndex")
    index_retriever = index.as_retriever(similarity_top_k=args.k * 3)

    # 2. The same records in a project store: dense vector (first stage) + ColBERT tokens (MaxSim rerank)
    texts = [node.text for node in nodes]
    vectors = embed_model.encoder.encode_documents(texts)
    tokens = colbert.encode_documents(texts)
    with open_store(args.store, kind="hybrid") as store:
        store.ensure_collection(HybridSpec.for_encoders(embed_model.encoder, colbert))
        store.upsert(
            Record(node.metadata["key"], vector, {**node.metadata, "text": node.text}, token_vectors=token)
            for node, vector, token in zip(nodes, vectors, tokens, strict=True)
        )
        store_retriever = LFMRetriever(store, embed_model=embed_model, colbert=colbert, similarity_top_k=args.k)
        print(f"wrote {store.count()} records to {args.store} (hybrid: dense prefetch, ColBERT MaxSim)")

        for query in queries:
            print(f"\nquery: {query}")
            candidates = index_retriever.retrieve(query)
            show_nodes("VectorStoreIndex (cosine):", candidates[: args.k])
            show_nodes(
                "VectorStoreIndex + LFMColBERTRerank (MaxSim):", reranker.postprocess_nodes(candidates, query_str=query)
            )
            show_nodes(f"LFMRetriever on {args.store} (hybrid):", store_retriever.retrieve(query))


if __name__ == "__main__":
    main()

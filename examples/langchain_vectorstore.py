"""Hybrid LFM2.5 search through LangChain's own vector-store API: LFMVectorStore over Qdrant's
engine in-process (qdrant+edge://, no server). Catalog records go in with from_documents /
add_documents (ids are SKU/locale, so running it again updates instead of duplicating) and come
back with similarity_search, a portable filter, MMR and as_retriever; every search is a dense
prefetch reordered by ColBERT MaxSim.

    python examples/langchain_vectorstore.py                            # LFM2.5 models from the Hugging Face Hub
    python examples/langchain_vectorstore.py --model DIR --colbert DIR  # local copies (or any ST / PyLate model)
    python examples/langchain_vectorstore.py --offline                  # offline: MiniLM + a MiniLM ColBERT stand-in
    python examples/langchain_vectorstore.py --offline --index ./lfm-index -q "cordless drill"

Products come from the sample catalog bundled with lfm_retrieval (lfm_retrieval.data).
Needs: pip install langchain-lfm lfm-retrieval-qdrant
"""

from __future__ import annotations

import argparse
import tempfile

from langchain_core.documents import Document
from sample_setup import add_model_options, catalog_rows, chosen_models

from langchain_lfm import LFMEmbeddings, LFMVectorStore

QUESTIONS = ["noise cancelling headphones for flights", "something to keep coffee hot on a hike"]
METADATA = ("sku", "locale", "title", "brand", "category", "price", "currency", "in_stock")


def load_documents(limit: int | None) -> list[Document]:
    """One LangChain Document per catalog record: id SKU/locale, title and description as text."""
    documents = []
    for row in catalog_rows():
        documents.append(
            Document(
                id=f"{row['sku']}/{row['locale']}",
                page_content=f"{row['title']}. {row['description']}",
                metadata={name: row[name] for name in METADATA},
            )
        )
    return documents[:limit]


def show(title: str, documents: list[Document], scores: list[float] | None = None) -> None:
    print(f"  {title}")
    for rank, document in enumerate(documents, 1):
        meta = document.metadata
        score = f"{scores[rank - 1]:7.3f}  " if scores else ""
        print(f"    {rank}. {score}{document.id:<14} {meta['price']:>7} {meta['currency']}  {meta['title'][:60]}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("-q", "--question", action="append", help="a question (repeatable; default: two samples)")
    parser.add_argument("--limit", type=int, default=None, help="index only the first N records (default: all)")
    parser.add_argument("--index", default=None, help="folder of the Qdrant Edge index (default: a temporary one)")
    args = parser.parse_args()

    model, colbert = chosen_models(args)

    documents = load_documents(args.limit)
    uri = f"qdrant+edge://{args.index or tempfile.mkdtemp(prefix='lfm-index-')}/products"
    print(f"indexing {len(documents)} catalog records into {uri} with {model} + {colbert} ...")
    vectorstore = LFMVectorStore.from_documents(
        documents,
        LFMEmbeddings(model=model),  # documents: the document side; queries: the query side
        store=uri,
        kind="hybrid",  # a dense vector and ColBERT token vectors per record
        colbert=colbert,
        prefetch=50,
    )
    vectorstore.add_documents(documents[:5])  # same ids: updated in place, not duplicated
    print(f"the collection holds {vectorstore.store.count()} records")

    retriever = vectorstore.as_retriever(search_kwargs={"k": 3, "filter": {"in_stock": True}})
    for question in args.question or QUESTIONS:
        print(f"\nQ: {question}")
        scored = vectorstore.similarity_search_with_score(question, k=3)
        show("hybrid (dense prefetch, MaxSim order):", [d for d, _ in scored], [s for _, s in scored])
        cheap = vectorstore.similarity_search(question, k=3, filter={"locale": "en", "price": {"lte": 100}})
        show("English records at most 100:", cheap)
        show("diverse (MMR):", vectorstore.max_marginal_relevance_search(question, k=3, fetch_k=10))
        show("retriever, in stock:", retriever.invoke(question))
    vectorstore.close()


if __name__ == "__main__":
    main()

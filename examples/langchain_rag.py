"""A LangChain retrieval chain on the LFM2.5 models: LFMEmbeddings in langchain-qdrant's
QdrantVectorStore (embedded local mode, no server), ColBERT reranking with
LFMColBERTReranker, and a prompt built from the reranked products. No LLM runs here: the
last step is a stand-in that shows the prompt an LLM would get.

    python examples/langchain_rag.py                                  # LFM2.5 models from the Hugging Face Hub
    python examples/langchain_rag.py --model DIR --colbert DIR        # local copies (or any ST / PyLate model)
    python examples/langchain_rag.py --offline                        # offline: real MiniLM + MiniLM ColBERT stand-in
    python examples/langchain_rag.py --offline -q "cordless drill" --locale all   # your own question, whole catalog

Products come from the sample catalog bundled with lfm_retrieval (lfm_retrieval.data).
Needs: pip install langchain-lfm langchain-qdrant
"""

from __future__ import annotations

import argparse
import tempfile
from typing import Any

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from langchain_qdrant import QdrantVectorStore
from sample_setup import add_model_options, catalog_rows, chosen_models

from langchain_lfm import LFMColBERTReranker, LFMEmbeddings

QUESTIONS = ["noise cancelling headphones for flights", "something to keep coffee hot on a hike"]
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a shop assistant. Answer only from these products:\n\n{context}"),
        ("human", "{question}"),
    ]
)


def load_catalog(locale: str, limit: int | None) -> tuple[list[str], list[dict[str, Any]]]:
    """Texts to embed and their metadata, from the bundled sample catalog."""
    texts, metadatas = [], []
    for row in catalog_rows(None if locale == "all" else {locale}):
        texts.append(f"{row['title']}. {row['description']}")
        metadatas.append({name: row[name] for name in ("sku", "locale", "title", "price", "currency")})
    return texts[:limit], metadatas[:limit]


def format_context(documents: list[Document]) -> str:
    return "\n".join(
        f"[{i}] {d.metadata['title']} ({d.metadata['price']} {d.metadata['currency']})"
        for i, d in enumerate(documents, 1)
    )


def stand_in_llm(prompt: Any) -> str:
    """Where an LLM would answer; here the prompt it would receive."""
    return "\n".join(f"  {m.type}: {m.content}".replace("\n", "\n    ") for m in prompt.to_messages())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_options(parser)
    parser.add_argument("-q", "--question", action="append", help="a question (repeatable; default: two samples)")
    parser.add_argument("--locale", default="en", help="catalog locale to index, or 'all' (default en)")
    parser.add_argument("--limit", type=int, default=None, help="index only the first N products")
    parser.add_argument("--candidates", type=int, default=10, help="dense candidates to rerank (default 10)")
    parser.add_argument("--top", type=int, default=3, help="products kept after reranking (default 3)")
    parser.add_argument("--qdrant-path", default=None, help="Qdrant local-mode folder (default: a temporary one)")
    args = parser.parse_args()

    model, colbert = chosen_models(args)

    embeddings = LFMEmbeddings(model=model)  # documents: "document: " prompt, queries: "query: " prompt
    reranker = LFMColBERTReranker(model=colbert, top_n=args.top)
    texts, metadatas = load_catalog(args.locale, args.limit)
    print(f"indexing {len(texts)} products with {model} ...")
    store = QdrantVectorStore.from_texts(
        texts,
        embeddings,
        metadatas=metadatas,
        path=args.qdrant_path or tempfile.mkdtemp(prefix="qdrant-"),
        collection_name="products",
    )
    retriever = store.as_retriever(search_kwargs={"k": args.candidates})
    chain = (
        RunnableParallel(documents=retriever, question=RunnablePassthrough())
        | RunnablePassthrough.assign(
            documents=RunnableLambda(lambda x: reranker.compress_documents(x["documents"], x["question"]))
        )
        | RunnableParallel(
            documents=lambda x: x["documents"],
            answer=RunnablePassthrough.assign(context=lambda x: format_context(x["documents"]))
            | PROMPT
            | RunnableLambda(stand_in_llm),
        )
    )
    for question in args.question or QUESTIONS:
        result = chain.invoke(question)
        print(f"\nQ: {question}")
        for rank, document in enumerate(result["documents"], 1):
            meta = document.metadata
            print(f"  {rank}. {meta['relevance_score']:7.3f}  {meta['sku']}/{meta['locale']}  {meta['title']}")
        print(" prompt for the LLM (stand-in):")
        print(result["answer"])
    store.client.close()


if __name__ == "__main__":
    main()

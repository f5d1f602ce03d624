"""A LangChain retrieval chain on the LFM2.5 models: LFMVectorStore(...).as_retriever() over the
project's hybrid store (dense prefetch, reordered by ColBERT MaxSim), feeding a prompt built from the
products it finds. No LLM runs here: the last step is a stand-in that shows the prompt an LLM would get.

    python examples/langchain_rag.py                                  # LFM2.5 models from the Hugging Face Hub
    python examples/langchain_rag.py --model DIR --colbert DIR        # local copies (or any ST / PyLate model)
    python examples/langchain_rag.py --offline                        # offline: real MiniLM + MiniLM ColBERT stand-in
    python examples/langchain_rag.py --offline -q "cordless drill" --locale all   # your own question, whole catalog
    python examples/langchain_rag.py --offline --store "qdrant+edge://./lfm-index/products"   # any store URI

Products come from the sample catalog bundled with lfm_retrieval (lfm_retrieval.data).
Needs: pip install langchain-lfm (and the store's adapter for a --store other than memory://)
"""

from __future__ import annotations

import argparse
from typing import Any

from langchain_core.documents import Document
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnableParallel, RunnablePassthrough
from sample_setup import add_model_options, catalog_rows, chosen_models

from langchain_lfm import LFMEmbeddings, LFMVectorStore

QUESTIONS = ["noise cancelling headphones for flights", "something to keep coffee hot on a hike"]
PROMPT = ChatPromptTemplate.from_messages(
    [
        ("system", "You are a shop assistant. Answer only from these products:\n\n{context}"),
        ("human", "{question}"),
    ]
)


def load_documents(locale: str, limit: int | None) -> list[Document]:
    """One Document per catalog record (id SKU/locale, title and description as text), from the bundled catalog."""
    documents = []
    for row in catalog_rows(None if locale == "all" else {locale}):
        documents.append(
            Document(
                id=f"{row['sku']}/{row['locale']}",
                page_content=f"{row['title']}. {row['description']}",
                metadata={name: row[name] for name in ("sku", "locale", "title", "price", "currency")},
            )
        )
    return documents[:limit]


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
    parser.add_argument("--candidates", type=int, default=10, help="dense candidates MaxSim reorders (default 10)")
    parser.add_argument("--top", type=int, default=3, help="products given to the prompt (default 3)")
    parser.add_argument("--store", default="memory://rag-products", help="store URI (default: in memory)")
    args = parser.parse_args()

    model, colbert = chosen_models(args)

    documents = load_documents(args.locale, args.limit)
    print(f"indexing {len(documents)} products into {args.store} with {model} + {colbert} ...")
    vectorstore = LFMVectorStore.from_documents(
        documents,
        LFMEmbeddings(model=model),  # documents: "document: " prompt, queries: "query: " prompt
        store=args.store,
        kind="hybrid",  # a dense vector and ColBERT token vectors per product
        colbert=colbert,
        prefetch=args.candidates,  # the dense candidates that ColBERT MaxSim puts in order
    )
    retriever = vectorstore.as_retriever(search_kwargs={"k": args.top})
    chain = RunnableParallel(documents=retriever, question=RunnablePassthrough()) | RunnablePassthrough.assign(
        answer=RunnablePassthrough.assign(context=lambda x: format_context(x["documents"]))
        | PROMPT
        | RunnableLambda(stand_in_llm)
    )
    for question in args.question or QUESTIONS:
        result = chain.invoke(question)
        print(f"\nQ: {question}")
        for rank, document in enumerate(result["documents"], 1):
            print(f"  {rank}. {document.id:<14} {document.metadata['title']}")
        print(" prompt for the LLM (stand-in):")
        print(result["answer"])
    vectorstore.close()


if __name__ == "__main__":
    main()

"""The framework classes take a GGUF file as their model, like the encoders: LangChain's embeddings and
reranker, LlamaIndex's embedding and reranker, each equal to the core encoder on the same file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from lfm_retrieval import ColBERTEncoder, DenseEncoder, ModelLoadError, rerank

TEXTS = ["Waterproof trail running shoes", "Cast iron skillet, 28 cm", "Noise cancelling headphones"]
QUERY = "shoes for wet trails"


def test_langchain_classes_take_a_gguf_file(gguf_files: dict[str, Path], tmp_path: Path) -> None:
    langchain_lfm = pytest.importorskip("langchain_lfm")
    from langchain_core.documents import Document

    embeddings = langchain_lfm.LFMEmbeddings(model=str(gguf_files["dense"]))
    encoder = DenseEncoder(str(gguf_files["dense"]))
    assert type(embeddings.encoder.runtime).__name__ == "GGUFDenseRuntime"
    assert np.allclose(embeddings.embed_query(QUERY), encoder.encode_queries([QUERY])[0], atol=1e-6)
    assert np.allclose(embeddings.embed_documents(TEXTS), encoder.encode_documents(TEXTS), atol=1e-6)
    reranker = langchain_lfm.LFMColBERTReranker(model=str(gguf_files["colbert"]), top_n=2)
    documents = [Document(page_content=text, id=str(i)) for i, text in enumerate(TEXTS)]
    expected = rerank(QUERY, TEXTS, ColBERTEncoder(str(gguf_files["colbert"])), top_k=2)
    assert [d.id for d in reranker.compress_documents(documents, QUERY)] == [str(r.index) for r in expected]
    (tmp_path / "broken.gguf").write_bytes(b"not a gguf file")
    for bad in (tmp_path / "missing.gguf", tmp_path / "broken.gguf"):  # refused at construction, naming the file
        with pytest.raises(ModelLoadError, match=bad.name):
            langchain_lfm.LFMEmbeddings(model=str(bad))


def test_llamaindex_classes_take_a_gguf_file(gguf_files: dict[str, Path]) -> None:
    embeddings = pytest.importorskip("llama_index.embeddings.lfm")
    postprocessor = pytest.importorskip("llama_index.postprocessor.lfm")
    from llama_index.core.schema import NodeWithScore, QueryBundle, TextNode

    embedding = embeddings.LFMEmbedding(model_name=str(gguf_files["dense"]))
    encoder = DenseEncoder(str(gguf_files["dense"]))
    assert np.allclose(embedding.get_query_embedding(QUERY), encoder.encode_queries([QUERY])[0], atol=1e-6)
    assert np.allclose(embedding.get_text_embedding_batch(TEXTS), encoder.encode_documents(TEXTS), atol=1e-6)
    reranker = postprocessor.LFMColBERTRerank(model_name=str(gguf_files["colbert"]), top_n=2)
    nodes = [NodeWithScore(node=TextNode(text=text, id_=str(i)), score=0.0) for i, text in enumerate(TEXTS)]
    expected = rerank(QUERY, TEXTS, ColBERTEncoder(str(gguf_files["colbert"])), top_k=2)
    reranked = reranker.postprocess_nodes(nodes, query_bundle=QueryBundle(QUERY))
    assert [n.node.node_id for n in reranked] == [str(r.index) for r in expected]

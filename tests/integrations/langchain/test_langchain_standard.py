"""langchain-tests standard suites: EmbeddingsUnitTests and EmbeddingsIntegrationTests for
LFMEmbeddings (tiny LFM2.5-layout checkpoint), RetrieversIntegrationTests for LFMRetriever
over each store kind filled with real MiniLM vectors."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from langchain_tests.integration_tests import EmbeddingsIntegrationTests, RetrieversIntegrationTests
from langchain_tests.unit_tests import EmbeddingsUnitTests

from langchain_lfm import LFMEmbeddings, LFMRetriever


class _TinyLFM25:
    @pytest.fixture(autouse=True)
    def _model_path(self, dense_path: Path) -> None:
        self.model_path = dense_path

    @property
    def embeddings_class(self) -> type[LFMEmbeddings]:
        return LFMEmbeddings

    @property
    def embedding_model_params(self) -> dict[str, Any]:
        return {"model": str(self.model_path), "device": "cpu", "batch_size": 8}


class TestLFMEmbeddingsUnit(_TinyLFM25, EmbeddingsUnitTests):
    pass


class TestLFMEmbeddingsIntegration(_TinyLFM25, EmbeddingsIntegrationTests):
    pass


class _Retriever:
    store_kind = "dense"
    backend = "memory"

    @pytest.fixture(autouse=True)
    def _store(self, fill_store, minilm_dense, minilm_colbert) -> None:
        encoders = {"dense_encoder": minilm_dense, "colbert_encoder": minilm_colbert}
        if self.store_kind == "dense":
            encoders.pop("colbert_encoder")
        elif self.store_kind == "multivector":
            encoders.pop("dense_encoder")
        self.params = {"store": fill_store(self.backend, self.store_kind), **encoders}

    @property
    def retriever_constructor(self) -> type[LFMRetriever]:
        return LFMRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return self.params

    @property
    def retriever_query_example(self) -> str:
        return "shoes for running on trails"


class TestLFMRetrieverDense(_Retriever, RetrieversIntegrationTests):
    store_kind = "dense"


class TestLFMRetrieverMultivector(_Retriever, RetrieversIntegrationTests):
    store_kind = "multivector"


class TestLFMRetrieverHybrid(_Retriever, RetrieversIntegrationTests):
    store_kind = "hybrid"


class TestLFMRetrieverQdrantLocal(_Retriever, RetrieversIntegrationTests):
    store_kind = "dense"
    backend = "qdrant-local"

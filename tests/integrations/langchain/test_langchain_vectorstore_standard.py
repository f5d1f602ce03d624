"""langchain-tests' VectorStoreIntegrationTests (sync and async) for LFMVectorStore with the
harness's own embeddings, on memory, Qdrant's engine in-process, live pgvector and Milvus Lite;
and for the hybrid and multivector kinds with the MiniLM ColBERT stand-in."""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest
from langchain_tests.integration_tests import VectorStoreIntegrationTests

from langchain_lfm import LFMVectorStore

_names = itertools.count()


def _name() -> str:
    return f"lc_vs_{next(_names)}"


class _Standard(VectorStoreIntegrationTests):
    """One fresh, empty collection per test, closed afterwards."""

    adapter: str | None = None

    def uri(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        raise NotImplementedError

    @pytest.fixture
    def vectorstore(self, request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LFMVectorStore]:
        if self.adapter is not None and importlib.util.find_spec(self.adapter) is None:
            pytest.skip(f"{self.adapter} is not installed")
        vectorstore = LFMVectorStore(self.uri(request, tmp_path), embedding=self.get_embeddings())
        yield vectorstore
        vectorstore.close()


class TestMemoryVectorStore(_Standard):
    def uri(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        return f"memory://{_name()}"


class TestQdrantEdgeVectorStore(_Standard):
    adapter = "qdrant_edge"

    def uri(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        return f"qdrant+edge://{tmp_path}/{_name()}"


@pytest.mark.one_stack
class TestPgvectorVectorStore(_Standard):
    adapter = "lfm_retrieval_pgvector"

    def uri(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        parts = urlsplit(request.getfixturevalue("postgres_dsn"))
        query = dict(parse_qsl(parts.query), table=_name())
        return urlunsplit(parts._replace(query=urlencode(query)))


@pytest.mark.one_stack
class TestMilvusLiteVectorStore(_Standard):
    adapter = "milvus_lite"

    def uri(self, request: pytest.FixtureRequest, tmp_path: Path) -> str:
        return f"milvus+lite://{tmp_path}/lite.db/{_name()}"


class TestMemoryHybridVectorStore(_Standard):
    """The hybrid kind under the same suite: the harness's embeddings for the dense prefetch and
    the MiniLM ColBERT stand-in for the MaxSim order."""

    @pytest.fixture
    def vectorstore(self, minilm_colbert) -> Iterator[LFMVectorStore]:
        vectorstore = LFMVectorStore(
            f"memory://{_name()}", embedding=self.get_embeddings(), colbert=minilm_colbert, kind="hybrid"
        )
        yield vectorstore
        vectorstore.close()


class TestQdrantEdgeMultivectorVectorStore(_Standard):
    """The multivector kind (ColBERT MaxSim only) on Qdrant's engine."""

    @pytest.fixture
    def vectorstore(self, minilm_colbert, tmp_path: Path) -> Iterator[LFMVectorStore]:
        pytest.importorskip("qdrant_edge")
        vectorstore = LFMVectorStore(f"qdrant+edge://{tmp_path}/{_name()}", colbert=minilm_colbert, kind="multivector")
        yield vectorstore
        vectorstore.close()

"""Fixtures for the langchain-lfm tests: real MiniLM encoders (dense and a ColBERT stand-in),
the English half of the bundled sample catalog, and filled stores of every kind."""

from __future__ import annotations

import importlib.util
import inspect
import itertools
import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.data import SAMPLE_CATALOG
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, Store, open_store
from lfm_retrieval.testing import build_minilm_colbert

_names = itertools.count()


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makeitem(collector: pytest.Collector, name: str, obj: object) -> list[pytest.Item] | None:
    """Run langchain-tests' async standard tests under pytest-asyncio.

    The suites are written for ``asyncio_mode = "auto"``; this project runs pytest-asyncio
    in strict mode, so their coroutine tests get the ``asyncio`` mark here (only in this folder).
    """
    if (
        isinstance(collector, pytest.Class)
        and name.startswith("test_")
        and inspect.iscoroutinefunction(obj)
        and getattr(obj, "__module__", "").startswith("langchain_tests.")
    ):
        item = pytest.Function.from_parent(collector, name=name)
        item.add_marker(pytest.mark.asyncio)
        return [item]
    return None


# Products the tests' queries must find, and their near neighbours (same brand/kind, other variant).
_WANTED = {"SKU-10001", "SKU-10002", "SKU-10039", "SKU-10040", "SKU-10064", "SKU-10065", "SKU-10068"}


@pytest.fixture(scope="session")
def catalog() -> list[dict[str, Any]]:
    """28 English products of the sample catalog (every third one, plus those the queries
    look for and their near neighbours): key, text and payload fields. Small, because two
    CPU cores encode it once per model per session."""
    rows = [json.loads(line) for line in SAMPLE_CATALOG.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [
        {
            "key": f"{row['sku']}/{row['locale']}",
            "text": f"{row['title']}. {row['description']}",
            "sku": row["sku"],
            "category": row["category"],
            "price": row["price"],
        }
        for row in rows
        if row["locale"] == "en" and (int(row["sku"][4:]) % 3 == 0 or row["sku"] in _WANTED)
    ]


@pytest.fixture(scope="session")
def minilm_dense(minilm_path: Path) -> DenseEncoder:
    return DenseEncoder(str(minilm_path), device="cpu")


@pytest.fixture(scope="session")
def minilm_colbert_path(minilm_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_minilm_colbert(tmp_path_factory.mktemp("minilm-colbert") / "model", minilm_path)


@pytest.fixture(scope="session")
def minilm_colbert(minilm_colbert_path: Path) -> ColBERTEncoder:
    return ColBERTEncoder(str(minilm_colbert_path), device="cpu")


@pytest.fixture(scope="session")
def catalog_vectors(catalog, minilm_dense, minilm_colbert) -> dict[str, Any]:
    """Document-side vectors of the catalog, encoded once per session."""
    texts = [row["text"] for row in catalog]
    return {"dense": minilm_dense.encode_documents(texts), "tokens": minilm_colbert.encode_documents(texts)}


def _records(catalog: list[dict[str, Any]], vectors: dict[str, Any], kind: str) -> list[Record]:
    records = []
    for i, row in enumerate(catalog):
        payload = {name: value for name, value in row.items() if name != "key"}
        dense = vectors["dense"][i] if kind in ("dense", "hybrid") else None
        tokens = vectors["tokens"][i] if kind in ("multivector", "hybrid") else None
        records.append(Record(row["key"], dense, payload, token_vectors=tokens))
    return records


BACKENDS = {"memory": None, "qdrant-local": "lfm_retrieval_qdrant", "postgresql": "lfm_retrieval_pgvector"}


def _store_uri(backend: str, name: str, request: pytest.FixtureRequest, tmp: pytest.TempPathFactory) -> str:
    """A new collection's URI: in memory, Qdrant local mode, or a table of the session's live PostgreSQL."""
    if backend == "memory":
        return f"memory://{name}"
    if importlib.util.find_spec(BACKENDS[backend]) is None:
        pytest.skip(f"{BACKENDS[backend]} is not installed")
    if backend == "qdrant-local":
        return f"qdrant+local://{tmp.mktemp('qdrant')}/{name}"
    parts = urlsplit(request.getfixturevalue("postgres_dsn"))
    table = f"{name}_{uuid.uuid4().hex[:8]}"  # unique on a long-lived server too (LFM_TEST_PG_DSN)
    return urlunsplit(parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), "table": table})))


@pytest.fixture
def fill_store(
    request: pytest.FixtureRequest,
    catalog,
    catalog_vectors,
    minilm_dense,
    minilm_colbert,
    tmp_path_factory: pytest.TempPathFactory,
) -> Callable[[str, str], Store]:
    """``fill_store(backend, kind)``: a new store of that kind holding the catalog's vectors
    (backends: memory, qdrant-local, postgresql)."""
    opened: list[Store] = []

    def fill(backend: str, kind: str) -> Store:
        uri = _store_uri(backend, f"langchain_{kind}_{next(_names)}", request, tmp_path_factory)
        try:
            store = open_store(uri, kind=kind)
        except ValueError as exc:  # an adapter that does not serve this kind (yet)
            pytest.skip(f"{backend} has no {kind} store here: {exc}")
        opened.append(store)
        if kind == "dense":
            spec: Any = CollectionSpec.for_encoder(minilm_dense)
        elif kind == "multivector":
            spec = CollectionSpec.for_encoder(minilm_colbert)
        else:
            spec = HybridSpec.for_encoders(minilm_dense, minilm_colbert)
        store.ensure_collection(spec)
        store.upsert(_records(catalog, catalog_vectors, kind))
        return store

    yield fill
    for store in opened:
        store.close()

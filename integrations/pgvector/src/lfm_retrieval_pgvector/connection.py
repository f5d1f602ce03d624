"""Connections: a psycopg pool with pgvector types registered, and errors naming the URI."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import psycopg
from pgvector.psycopg import register_vector
from psycopg.types import TypeInfo
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from lfm_retrieval.errors import StoreUnavailableError
from lfm_retrieval_pgvector.uri import PgTarget


def is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` means the server cannot be reached (not a bad query)."""
    if isinstance(exc, (PoolTimeout, PoolClosed)):
        return True
    if isinstance(exc, psycopg.OperationalError):
        state = getattr(exc, "sqlstate", None)
        # No SQLSTATE: libpq failed before the server answered; 08: connection exception;
        # 57P01-03: admin shutdown, crash shutdown, cannot connect now.
        return state is None or state.startswith("08") or state in ("57P01", "57P02", "57P03")
    return False


@contextmanager
def connection_errors(target: PgTarget, operation: str) -> Iterator[None]:
    """Re-raise a connection failure in the block as StoreUnavailableError naming the (password-masked) URI."""
    try:
        yield
    except (psycopg.OperationalError, PoolTimeout, PoolClosed) as exc:
        if not is_connection_error(exc):
            raise
        reason = str(exc).strip() or type(exc).__name__
        raise StoreUnavailableError(
            f"cannot reach PostgreSQL for store {target.display!r} ({operation}): {reason}"
        ) from exc


def configure(conn: psycopg.Connection) -> None:
    """Make the pgvector types usable on ``conn``, creating the extension when it is missing."""
    if TypeInfo.fetch(conn, "vector") is None:
        try:
            conn.execute("CREATE EXTENSION IF NOT EXISTS vector")
        except psycopg.Error as exc:
            raise psycopg.ProgrammingError(
                f"the pgvector extension is not installed in this database and could not be created ({exc}); "
                "run CREATE EXTENSION vector as a privileged user"
            ) from exc
    register_vector(conn)


def connect_kwargs(timeout: float) -> dict[str, object]:
    """libpq settings of every connection: autocommit (transactions are explicit) and connect_timeout."""
    # libpq takes whole seconds and treats values below 2 as 2.
    return {"autocommit": True, "connect_timeout": max(2, math.ceil(timeout))}


def open_pool(target: PgTarget, *, timeout: float, min_size: int, max_size: int) -> ConnectionPool:
    """A started pool on ``target``: one direct connection first, so a failure names its real cause."""
    kwargs = connect_kwargs(timeout)
    with connection_errors(target, "connect"), psycopg.connect(target.dsn, **kwargs) as probe:  # type: ignore[arg-type]
        configure(probe)
    pool = ConnectionPool(
        target.dsn,
        min_size=min_size,
        max_size=max_size,
        kwargs=kwargs,
        configure=configure,
        check=ConnectionPool.check_connection,
        timeout=timeout,
        name=f"lfm-pgvector:{target.table}",
        open=False,
    )
    try:
        with connection_errors(target, "open the connection pool"):
            pool.open(wait=True, timeout=timeout)
    except BaseException:
        pool.close()
        raise
    return pool


@contextmanager
def connection(pool: ConnectionPool, target: PgTarget) -> Iterator[psycopg.Connection]:
    """A pooled connection; connection failures become StoreUnavailableError naming the URI."""
    with connection_errors(target, "use a pooled connection"), pool.connection() as conn:
        yield conn

"""Connections: psycopg pools (sync, and async for ``asearch``) with pgvector types, errors naming the URI."""

from __future__ import annotations

import asyncio
import math
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import psycopg
from pgvector.psycopg import register_vector, register_vector_async
from psycopg.types import TypeInfo
from psycopg_pool import AsyncConnectionPool, ConnectionPool, PoolClosed, PoolTimeout

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


CREATE_EXTENSION = "CREATE EXTENSION IF NOT EXISTS vector"


def _no_extension(exc: psycopg.Error) -> psycopg.ProgrammingError:
    return psycopg.ProgrammingError(
        f"the pgvector extension is not installed in this database and could not be created ({exc}); "
        "run CREATE EXTENSION vector as a privileged user"
    )


def configure(conn: psycopg.Connection) -> None:
    """Make the pgvector types usable on ``conn``, creating the extension when it is missing."""
    if TypeInfo.fetch(conn, "vector") is None:
        try:
            conn.execute(CREATE_EXTENSION)
        except psycopg.Error as exc:
            raise _no_extension(exc) from exc
    register_vector(conn)


async def aconfigure(conn: psycopg.AsyncConnection) -> None:
    """:func:`configure` on an async connection."""
    if await TypeInfo.fetch(conn, "vector") is None:
        try:
            await conn.execute(CREATE_EXTENSION)
        except psycopg.Error as exc:
            raise _no_extension(exc) from exc
    await register_vector_async(conn)


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
        configure=configure,
        check=ConnectionPool.check_connection,
        **_pool_options(target, kwargs, timeout=timeout, min_size=min_size, max_size=max_size),
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


def _pool_options(
    target: PgTarget, kwargs: dict[str, object], *, timeout: float, min_size: int, max_size: int
) -> dict[str, Any]:
    """What the sync and the async pool share: sizes, connection settings, timeout, name; opened by the caller."""
    name = f"lfm-pgvector:{target.table}"
    return {
        "min_size": min_size,
        "max_size": max_size,
        "kwargs": kwargs,
        "timeout": timeout,
        "name": name,
        "open": False,
    }


async def open_async_pool(target: PgTarget, *, timeout: float, min_size: int, max_size: int) -> AsyncConnectionPool:
    """:func:`open_pool` for asyncio: a started ``AsyncConnectionPool``, bound to the running event loop."""
    kwargs = connect_kwargs(timeout)
    with connection_errors(target, "connect"):
        async with await psycopg.AsyncConnection.connect(target.dsn, **kwargs) as probe:  # type: ignore[arg-type]
            await aconfigure(probe)
    pool = AsyncConnectionPool(
        target.dsn,
        configure=aconfigure,
        check=AsyncConnectionPool.check_connection,
        **_pool_options(target, kwargs, timeout=timeout, min_size=min_size, max_size=max_size),
    )
    try:
        with connection_errors(target, "open the connection pool"):
            await pool.open(wait=True, timeout=timeout)
    except BaseException:
        await pool.close()
        raise
    guard = asyncio.get_running_loop().create_task(_close_at_loop_end(pool))
    _GUARDS.add(guard)
    guard.add_done_callback(_GUARDS.discard)
    return pool


#: The tasks of :func:`_close_at_loop_end` (the event loop keeps only weak references to tasks).
_GUARDS: set[asyncio.Task[None]] = set()


async def _close_at_loop_end(pool: AsyncConnectionPool) -> None:
    """Close ``pool`` when its event loop ends: ``asyncio.run`` cancels every task then, this one too.

    Without it a pool worker cancelled in the middle of a job (e.g. adding a connection) swallows the
    cancellation and waits for its next job forever, and ``asyncio.run`` with it; closing stops it."""
    try:
        await asyncio.get_running_loop().create_future()
    finally:
        await pool.close()


@asynccontextmanager
async def aconnection(pool: AsyncConnectionPool, target: PgTarget) -> AsyncIterator[psycopg.AsyncConnection]:
    """:func:`connection` from an async pool."""
    with connection_errors(target, "use a pooled connection"):
        async with pool.connection() as conn:
            yield conn

"""``PgTable``: a collection in one PostgreSQL table with pgvector; ``PgvectorDenseStore``: a dense one."""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import uuid
from collections.abc import Callable, Generator, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

import numpy as np
import psycopg
from psycopg import sql
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool, ConnectionPool

from lfm_retrieval.errors import CollectionMismatchError
from lfm_retrieval.muvera import DEFAULT_DIM_PROJ, Muvera
from lfm_retrieval.stores.base import DenseStore, FilterSpec, Store
from lfm_retrieval.stores.filters import Node, parse_filter
from lfm_retrieval.stores.records import AnySpec, Hit, HybridSpec, Record, check_query_vector
from lfm_retrieval_pgvector.connection import aconnection, connection, open_async_pool, open_pool
from lfm_retrieval_pgvector.filters import to_filter
from lfm_retrieval_pgvector.layout import OPERATORS, REGISTRY_TABLE, Layout, columns_of
from lfm_retrieval_pgvector.rows import (
    HalfVector,
    copy_rows,
    payload_json,
    prepare_rows,
    tokens_from_bytes,
    verbatim,
)
from lfm_retrieval_pgvector.uri import PgTarget, parse_uri

logger = logging.getLogger(__name__)

#: pgvector's ceiling for hnsw.ef_search.
EF_SEARCH_MAX = 1000

Rows = list[tuple[Any, ...]]
#: The statements of one search, run by :func:`run_steps` or :func:`arun_steps`: a generator that yields
#: (statement, parameters), is sent each statement's rows, and returns the rows the search keeps.
Steps = Generator[tuple[Any, Sequence[Any]], Rows, Rows]
#: What a search makes of those rows: its hits.
Finish = Callable[[Rows], list[Hit]]
#: Turns the indexes off for the rest of a search's transaction: the next query scans exactly.
EXACT_SCAN = "SELECT set_config('enable_indexscan', 'off', true)"


def run_steps(steps: Steps, conn: psycopg.Connection) -> Rows:
    """Run a search's statements on ``conn``."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(conn.execute(*statement).fetchall())
    except StopIteration as done:
        return done.value


async def arun_steps(steps: Steps, conn: psycopg.AsyncConnection) -> Rows:
    """:func:`run_steps` on an async connection: the same statements, awaited."""
    try:
        statement = next(steps)
        while True:
            statement = steps.send(await (await conn.execute(*statement)).fetchall())
    except StopIteration as done:
        return done.value


class PgTable(Store):
    """Records in ``schema.table``: ``id uuid``, ``key``, the kind's vector columns, ``metadata jsonb``.

    The spec each table was made with is kept in the schema's ``lfm_retrieval_collections``
    table. Connections come from a pool opened on first use. An ``upsert`` into an empty
    table loads with COPY first and builds the HNSW and GIN indexes after; later upserts
    merge through a temporary table with ``INSERT ... ON CONFLICT``, one transaction per batch.
    The stores of each kind (:class:`PgvectorDenseStore`, and the multivector and hybrid stores of
    ``lfm_retrieval_pgvector.late_interaction``) add their search. ``asearch`` runs a search's statements on
    psycopg's async pool (one per event loop), without a thread; writes run on the sync pool.
    """

    shared = True  # a PostgreSQL server: any process may open the table

    def __init__(
        self,
        uri: str,
        *,
        timeout: float = 10.0,
        pool_size: int = 4,
        ef_search: int = 100,
        hnsw_m: int = 16,
        hnsw_ef_construction: int = 64,
        maintenance_work_mem: str | None = None,
        search_settings: Mapping[str, str] | None = None,
        build_indexes: bool = True,
    ) -> None:
        """Open lazily: nothing connects until the first call that needs the database."""
        self.target: PgTarget = parse_uri(uri)
        self.uri = self.target.display
        if timeout <= 0 or pool_size < 1 or not 1 <= ef_search <= EF_SEARCH_MAX:
            raise ValueError(f"bad options: timeout={timeout!r}, pool_size={pool_size!r}, ef_search={ef_search!r}")
        self.timeout = float(timeout)
        self.pool_size = int(pool_size)
        self.ef_search = int(ef_search)
        self.hnsw_m = int(hnsw_m)
        self.hnsw_ef_construction = int(hnsw_ef_construction)
        self.maintenance_work_mem = maintenance_work_mem
        self.search_settings = dict(search_settings or {})
        self.build_indexes = bool(build_indexes)
        self._pool: ConnectionPool | None = None
        #: ``asearch``'s pools, one per event loop (each opened by a task on its loop).
        self._async_pools: dict[asyncio.AbstractEventLoop, asyncio.Task[AsyncConnectionPool]] = {}
        self._layout: Layout | None = None
        self._open_lock = threading.Lock()
        self._loading = threading.local()
        #: The MUVERA encoder of a multivector collection (read from, or recorded in, the registry).
        self._muvera: Muvera | None = None

    # -- connections ------------------------------------------------------------------------
    def _connect(self) -> tuple[ConnectionPool, Layout]:
        with self._open_lock:
            if self._pool is None:
                pool = open_pool(self.target, timeout=self.timeout, min_size=1, max_size=self.pool_size)
                try:
                    with connection(pool, self.target) as conn:
                        schema = self.target.schema or conn.execute("SELECT current_schema()").fetchone()[0]
                except BaseException:
                    pool.close()
                    raise
                if schema is None:
                    pool.close()
                    raise ValueError(f"store {self.uri!r}: the search_path names no existing schema; add ?schema=NAME")
                self._layout = Layout(schema=schema, table=self.target.table)
                self._pool = pool
            return self._pool, self._layout  # type: ignore[return-value]

    @contextmanager
    def _transaction(self) -> Iterator[psycopg.Connection]:
        """A pooled connection inside one transaction (connection failures name the URI)."""
        pool, _ = self._connect()
        with connection(pool, self.target) as conn, conn.transaction():
            yield conn

    async def _async_pool(self) -> AsyncConnectionPool:
        """The running event loop's pool (same DSN, settings and sizes as the sync one), opened on first use.

        A pool is closed when its loop ends (:func:`~lfm_retrieval_pgvector.connection.open_async_pool`);
        those of ended loops are let go here (connections its close left open close as they are collected)."""
        loop = asyncio.get_running_loop()
        with self._open_lock:
            opening = self._async_pools.get(loop)
            if opening is None:
                for ended in [other for other in self._async_pools if other.is_closed()]:
                    del self._async_pools[ended]
                pool = open_async_pool(self.target, timeout=self.timeout, min_size=1, max_size=self.pool_size)
                opening = self._async_pools[loop] = loop.create_task(pool)
        try:
            return await asyncio.shield(opening)  # one caller cancelled does not cancel the others' pool
        except Exception:
            with self._open_lock:
                if self._async_pools.get(loop) is opening:
                    del self._async_pools[loop]  # it did not open: the next call tries again
            raise

    @property
    def layout(self) -> Layout:
        """Names and DDL of this collection's table (connects if needed)."""
        return self._layout if self._layout is not None else self._connect()[1]

    def close(self) -> None:
        """Close the pools (a later call opens new ones); an async pool is closed on its event loop."""
        with self._open_lock:
            if self._pool is not None:
                self._pool.close()
                self._pool = None
            async_pools, self._async_pools = self._async_pools, {}
        for loop, opening in async_pools.items():
            _close_on(loop, opening)

    async def aclose(self) -> None:
        """:meth:`close` from async code: this event loop's pool is closed before it returns."""
        with self._open_lock:
            opening = self._async_pools.pop(asyncio.get_running_loop(), None)
        if opening is not None:
            await _close_opened(opening)
        await asyncio.to_thread(self.close)

    # -- schema -----------------------------------------------------------------------------
    def _relation_exists(self, conn: psycopg.Connection, name: str) -> bool:
        row = conn.execute(
            "SELECT FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (self.layout.schema, name),
        ).fetchone()
        return row is not None

    def _registered(self, conn: psycopg.Connection) -> dict[str, Any] | None:
        layout = self.layout
        if not self._relation_exists(conn, REGISTRY_TABLE):
            return None
        # to_jsonb(r): also a registry made before its ``spec`` column answers
        row = conn.execute(
            sql.SQL("SELECT to_jsonb(r) FROM {} AS r WHERE table_name = %s").format(layout.registry), (layout.table,)
        ).fetchone()
        if row is None:
            return None
        if row[0].get("spec"):
            return dict(row[0]["spec"])  # a multivector or hybrid collection: its whole spec (and MUVERA settings)
        return {name: row[0][name] for name in ("dimension", "distance", "vector_type", "model")}

    def _spec_in(self, conn: psycopg.Connection) -> dict[str, Any] | None:
        """The registered spec of an existing table; None when there is no table."""
        layout = self.layout
        table_exists = self._relation_exists(conn, layout.table)
        spec = self._registered(conn)
        if table_exists and spec is None:
            raise CollectionMismatchError(
                f"collection {self.uri!r}: table {layout.schema}.{layout.table} already exists but was not made by "
                "lfm-retrieval (no entry in lfm_retrieval_collections); nothing was written"
            )
        return spec if table_exists else None

    def _read_spec(self) -> dict[str, Any] | None:
        with self._transaction() as conn:
            return self._kept_muvera(self._spec_in(conn))

    def _kept_muvera(self, stored: dict[str, Any] | None) -> dict[str, Any] | None:
        """The stored spec without its MUVERA settings, which rebuild the collection's encoder."""
        if stored is not None and "muvera" in stored:
            stored = dict(stored)
            self._muvera = Muvera.from_config(stored.pop("muvera"))
        return stored

    def _create(self, spec: AnySpec) -> None:
        layout = self.layout
        with self._transaction() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))", (layout.lock_key,))
            existing = self._kept_muvera(self._spec_in(conn))  # another process may have created it meanwhile
            if existing is not None:
                spec.check_matches(existing, f"collection {self.uri!r}")
                return
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(layout.schema)))
            conn.execute(layout.create_registry())
            conn.execute(layout.add_registry_spec())
            recorded = None
            if spec.kind != "dense":
                recorded = spec.as_metadata()
                if spec.kind == "multivector":
                    self._muvera = Muvera(spec.dimension, dim_proj=min(DEFAULT_DIM_PROJ, spec.dimension))
                    recorded["muvera"] = self._muvera.config()
            conn.execute(layout.create_table(spec, self._muvera.embedding_size if self._muvera else None))
            if "tokens" in columns_of(spec):
                conn.execute(layout.store_tokens_uncompressed())
            head = spec.dense if isinstance(spec, HybridSpec) else spec
            conn.execute(
                sql.SQL(
                    "INSERT INTO {} (table_name, dimension, distance, vector_type, model, spec) "
                    "VALUES (%s, %s, %s, %s, %s, %s) "
                    "ON CONFLICT (table_name) DO UPDATE SET dimension = EXCLUDED.dimension, "
                    "distance = EXCLUDED.distance, vector_type = EXCLUDED.vector_type, model = EXCLUDED.model, "
                    "spec = EXCLUDED.spec, created_at = now()"
                ).format(layout.registry),
                (
                    layout.table,
                    head.dimension,
                    head.distance,
                    head.vector_type,
                    head.model,
                    None if recorded is None else Jsonb(recorded),
                ),
            )

    # -- writes -----------------------------------------------------------------------------
    def upsert(self, records: Iterable[Record], *, batch_size: int = 512) -> int:
        """Insert or replace records by stable id, one transaction per batch.

        Into an empty table the batches are COPYed straight in and the HNSW and GIN
        indexes are built once, after the load (loading through an HNSW index is several
        times slower). Wrap several calls in :meth:`bulk_load` to build them once for all.
        """
        with self.bulk_load():
            return super().upsert(records, batch_size=batch_size)

    @contextmanager
    def bulk_load(self) -> Iterator[PgTable]:
        """Defer index builds over several ``upsert`` calls (e.g. a job writing batch by batch).

        If the table is empty on entry, its indexes are dropped (free on an empty table),
        rows are COPYed in, and the HNSW and GIN indexes are built once on exit, also when
        the block fails (what was committed is indexed). A table holding rows keeps its
        indexes. Nested uses (and ``upsert`` inside) share the outermost load.
        """
        spec = self._require_spec()
        depth = getattr(self._loading, "depth", 0)
        if depth == 0:
            self._loading.active = self._begin_load()
        self._loading.depth = depth + 1
        try:
            yield self
        except BaseException:
            if depth == 0:
                self._loading.active = False
                try:  # index what earlier batches committed; the block's own error is what matters
                    if self.build_indexes:
                        self._ensure_indexes(spec)
                except Exception as exc:  # pragma: no cover - e.g. the server went away too
                    logger.warning("could not build the indexes of %s after a failed load: %s", self.uri, exc)
            raise
        else:
            if depth == 0:
                self._loading.active = False
                if self.build_indexes:
                    self._ensure_indexes(spec)
        finally:
            self._loading.depth = depth

    def _begin_load(self) -> bool:
        """True when the table is empty: its indexes are dropped (free) until the load is done."""
        layout = self.layout
        with self._transaction() as conn:
            empty = conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(layout.qualified)).fetchone()[0]
            if empty:
                conn.execute(layout.drop_indexes())
        return bool(empty)

    def create_indexes(self) -> None:
        """Build the HNSW and GIN indexes now if they are missing (for stores opened with
        ``build_indexes=False``, or after a load that was interrupted)."""
        self._ensure_indexes(self._require_spec())

    def _ensure_indexes(self, spec: AnySpec) -> None:
        """Build the HNSW and GIN indexes if missing and the table holds rows."""
        layout = self.layout
        with self._transaction() as conn:
            present = {
                row[0]
                for row in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND tablename = %s",
                    (layout.schema, layout.table),
                )
            }
            hnsw = layout.create_hnsw(
                spec,
                m=self.hnsw_m,
                ef_construction=self.hnsw_ef_construction,
                muvera_dimension=self._muvera.embedding_size if self._muvera else None,
            )
            wanted = ((layout.hnsw_index, hnsw), (layout.gin_index, layout.create_gin()))
            statements = [ddl for name, ddl in wanted if ddl is not None and name not in present]
            if not statements:
                return
            if conn.execute(sql.SQL("SELECT NOT EXISTS (SELECT FROM {})").format(layout.qualified)).fetchone()[0]:
                return  # nothing to index yet: the next load builds them after itself
            if self.maintenance_work_mem:
                conn.execute("SELECT set_config('maintenance_work_mem', %s, true)", (self.maintenance_work_mem,))
            conn.add_notice_handler(_log_notice)  # e.g. "hnsw graph no longer fits into maintenance_work_mem"
            try:
                for statement in statements:
                    conn.execute(statement)
            finally:
                conn.remove_notice_handler(_log_notice)

    def _upsert(self, rows: list[tuple[str, Any, Record]]) -> int:
        spec = self._require_spec()
        prepared = prepare_rows(rows, spec, self._muvera)
        if not prepared:
            return 0
        if getattr(self._loading, "active", False):
            try:
                with self._transaction() as conn:
                    ids = [row[0] for row in prepared]
                    stored = conn.execute(
                        sql.SQL("SELECT EXISTS (SELECT FROM {} WHERE id = ANY(%s))").format(self.layout.qualified),
                        (ids,),
                    ).fetchone()[0]
                    if not stored:
                        with conn.cursor() as cursor:
                            copy_rows(cursor, self.layout.qualified, prepared, spec)
                        return len(rows)
            except psycopg.errors.UniqueViolation:
                pass  # a concurrent writer stored one of these ids meanwhile: merge instead
        self._merge(prepared, spec)
        return len(rows)

    def _merge(self, prepared: list, spec: AnySpec) -> None:
        """COPY into a temporary table, then INSERT ... ON CONFLICT (id) DO UPDATE, in one transaction."""
        layout = self.layout
        stage = sql.Identifier("lfm_stage")
        names = columns_of(spec)
        columns = sql.SQL(", ").join(map(sql.Identifier, names))
        changed = sql.SQL(" OR ").join(
            sql.SQL("t.{c} IS DISTINCT FROM EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in names[1:]
        )
        merge = sql.SQL(
            "INSERT INTO {table} AS t ({columns}) SELECT {columns} FROM {stage} "
            "ON CONFLICT (id) DO UPDATE SET {updates} WHERE {changed}"
        ).format(
            table=layout.qualified,
            columns=columns,
            stage=stage,
            updates=sql.SQL(", ").join(sql.SQL("{c} = EXCLUDED.{c}").format(c=sql.Identifier(c)) for c in names[1:]),
            changed=changed,
        )
        with self._transaction() as conn, conn.cursor() as cursor:
            cursor.execute(
                sql.SQL("CREATE TEMPORARY TABLE {} (LIKE {}) ON COMMIT DROP").format(stage, layout.qualified)
            )
            copy_rows(cursor, stage, prepared, spec)
            cursor.execute(merge)

    def _delete(self, ids: list[str]) -> None:
        with self._transaction() as conn:
            conn.execute(
                sql.SQL("DELETE FROM {} WHERE id = ANY(%s)").format(self.layout.qualified),
                ([uuid.UUID(i) for i in ids],),
            )

    def _update_payloads(self, rows: list[tuple[str, str, dict[str, Any], str]]) -> int:
        latest = {record_id: (key, payload, fp) for record_id, key, payload, fp in rows}
        ids, payloads, fingerprints = [], [], []
        for record_id, (key, payload, fp) in latest.items():
            ids.append(uuid.UUID(record_id))
            payloads.append(Jsonb(payload_json(key, payload), verbatim))
            fingerprints.append(fp)
        with self._transaction() as conn:
            cursor = conn.execute(
                sql.SQL(
                    "UPDATE {} AS t SET metadata = s.metadata, fingerprint = s.fingerprint "
                    "FROM unnest(%s::uuid[], %s::jsonb[], %s::text[]) AS s(id, metadata, fingerprint) WHERE t.id = s.id"
                ).format(self.layout.qualified),
                (ids, payloads, fingerprints),
            )
            return cursor.rowcount

    # -- reads ------------------------------------------------------------------------------
    def _scan_fingerprints(self) -> Iterator[tuple[str, str]]:
        with self._transaction() as conn, conn.cursor(name="lfm_fingerprints") as cursor:
            cursor.itersize = 10_000
            cursor.execute(sql.SQL("SELECT key, fingerprint FROM {}").format(self.layout.qualified))
            yield from cursor

    def _lookup_fingerprints(self, ids: list[str]) -> list[tuple[str, str]]:
        with self._transaction() as conn:
            query = sql.SQL("SELECT key, fingerprint FROM {} WHERE id = ANY(%s)").format(self.layout.qualified)
            return conn.execute(query, ([uuid.UUID(i) for i in ids],)).fetchall()

    def _scan_records(self, batch_size: int) -> Iterator[Record]:
        spec = self._require_spec()
        dense = "embedding" in columns_of(spec)
        tokens = spec.multivector if isinstance(spec, HybridSpec) else spec if spec.kind == "multivector" else None
        columns = ["key", "metadata", "fingerprint"] + ["embedding"] * dense + ["tokens"] * (tokens is not None)
        query = sql.SQL("SELECT {} FROM {}").format(
            sql.SQL(", ").join(map(sql.Identifier, columns)), self.layout.qualified
        )
        with self._transaction() as conn, conn.cursor(name="lfm_records") as cursor:
            cursor.itersize = batch_size
            cursor.execute(query)
            for key, metadata, fingerprint, *vectors in cursor:
                vector = dense_array(vectors.pop(0)) if dense else None
                matrix = None if tokens is None else tokens_from_bytes(vectors[0], tokens.dimension, tokens.vector_type)
                yield Record(key, vector, metadata, fingerprint, matrix)

    def _count(self, filter: Node | None) -> int:
        condition, params = to_filter(filter)
        with self._transaction() as conn:
            query = sql.SQL("SELECT count(*) FROM {} WHERE {}").format(self.layout.qualified, condition)
            return conn.execute(query, params).fetchone()[0]

    def _search_settings(self, k: int, extra: Mapping[str, str] | None = None) -> tuple[sql.Composed, list[str]]:
        """The statement that SETs LOCAL one search's HNSW settings: ef_search >= k, iterative scans for filters."""
        settings = {
            "hnsw.ef_search": str(min(max(self.ef_search, k), EF_SEARCH_MAX)),
            "hnsw.iterative_scan": "relaxed_order",
            **self.search_settings,
            **(extra or {}),
        }
        calls = sql.SQL(", ").join([sql.SQL("set_config(%s, %s, true)")] * len(settings))
        return sql.SQL("SELECT {}").format(calls), [x for item in settings.items() for x in map(str, item)]

    def _candidates(self, query: sql.Composable, params: list[Any], k: int) -> Steps:
        """The statements of an ordered query LIMITed to ``k``: the search settings, then the query; again as an
        exact scan (no index) when the index gave fewer than ``k`` rows."""
        yield self._search_settings(k)
        rows = yield query, params
        if len(rows) < k:
            # Fewer than asked: either fewer rows match, or the index scan gave up early
            # (hnsw.max_scan_tuples). An exact scan settles it.
            yield EXACT_SCAN, []
            rows = yield query, params
        return rows

    def _search_plan(self, *query: Any) -> tuple[Steps, Finish]:
        """The statements of a search with ``_search``'s arguments, and what makes hits of their rows."""
        raise NotImplementedError

    def _search(self, *query: Any) -> list[Hit]:
        steps, finish = self._search_plan(*query)
        with self._transaction() as conn:
            rows = run_steps(steps, conn)
        return finish(rows)

    async def asearch(self, *query: Any, **options: Any) -> list[Hit]:
        """``search`` on psycopg's async pool, without a thread: the same arguments, checks, statements and hits.

        A store that has not yet read its collection's spec reads it first, once, in a worker thread."""
        if self.spec is None or self._layout is None:
            await asyncio.to_thread(lambda: (self._require_spec(), self._connect()))
        steps, finish = self._search_plan(*self._prepare_search(*query, **options))  # type: ignore[attr-defined]
        async with aconnection(await self._async_pool(), self.target) as conn, conn.transaction():
            rows = await arun_steps(steps, conn)
        return finish(rows)


class PgvectorDenseStore(PgTable, DenseStore):
    """A dense collection: ``embedding vector(d)|halfvec(d)`` with an HNSW index (see :class:`PgTable`)."""

    def _search_query(self, vector: np.ndarray, k: int, filter: Node | None) -> tuple[sql.Composed, list[Any]]:
        spec = self._require_spec()
        query_vector: Any = HalfVector(vector) if spec.vector_type == "float16" else vector
        condition, params = to_filter(filter)
        operator = sql.SQL(OPERATORS[spec.distance])
        query = sql.SQL(
            "SELECT id, key, metadata, embedding {op} %s AS distance FROM {table} WHERE {condition} "
            "ORDER BY embedding {op} %s LIMIT %s"
        ).format(op=operator, table=self.layout.qualified, condition=condition)
        return query, [query_vector, *params, query_vector, k]

    def _search_plan(self, vector: np.ndarray, k: int, filter: Node | None) -> tuple[Steps, Finish]:
        return self._candidates(*self._search_query(vector, k, filter), k), self._hits

    def _hits(self, rows: Rows) -> list[Hit]:
        hits = [Hit(str(rid), key, self._score(distance), metadata) for rid, key, metadata, distance in rows]
        hits.sort(key=lambda hit: -hit.score)  # relaxed_order may return near-ties out of order
        return hits

    def _score(self, distance: float | None) -> float:
        """A similarity, higher is better: cosine 1 - d, dot -(negative inner product), euclid -d."""
        distance = float("nan") if distance is None else float(distance)
        if self.spec is not None and self.spec.distance == "cosine":
            return 0.0 if math.isnan(distance) else 1.0 - distance  # a zero vector has no angle
        return -distance

    def explain(self, vector: np.ndarray | list[float], k: int = 10, filter: FilterSpec = None, **settings: str) -> str:
        """EXPLAIN of the search this store would run (with its SET LOCAL settings, plus ``settings``)."""
        spec = self._require_spec()
        query, params = self._search_query(check_query_vector(vector, spec), k, parse_filter(filter))
        with self._transaction() as conn:
            conn.execute(*self._search_settings(k, settings))
            rows = conn.execute(sql.SQL("EXPLAIN ") + query, params).fetchall()
        return "\n".join(row[0] for row in rows)


def dense_array(value: Any) -> np.ndarray:
    """A ``vector`` or ``halfvec`` value as a float32 array."""
    return np.asarray(value.to_numpy() if isinstance(value, HalfVector) else value, dtype=np.float32)


async def _close_opened(opening: asyncio.Task[AsyncConnectionPool]) -> None:
    """Close the pool ``opening`` opened (nothing when it failed to open)."""
    try:
        pool = await opening
    except Exception:
        return
    await pool.close()


def _close_on(loop: asyncio.AbstractEventLoop, opening: asyncio.Task[AsyncConnectionPool]) -> None:
    """Close an async pool from sync code, on its own event loop: scheduled there while it runs, run to the end
    while it is idle; a closed loop's pool was closed as the loop ended (see :meth:`PgTable._async_pool`)."""
    if loop.is_closed():
        return
    if loop.is_running():
        asyncio.run_coroutine_threadsafe(_close_opened(opening), loop)
    elif not _loop_running_here():  # else another loop runs in this thread: let it go, as a closed loop's
        loop.run_until_complete(_close_opened(opening))


def _loop_running_here() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


def _log_notice(diagnostic: psycopg.errors.Diagnostic) -> None:
    """Index builds report memory trouble as NOTICEs: pass them on (raise maintenance_work_mem)."""
    logger.warning("PostgreSQL: %s", diagnostic.message_primary)

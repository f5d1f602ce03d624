"""A PLAID index (fast-plaid, the engine under PyLate's ``indexes.PLAID``) as a multivector store.

Folder layout::

    <folder>/records.sqlite   source of truth: spec; stable id -> key, payload, fingerprint,
                              position in the PLAID index, and the token vectors
    <folder>/plaid/           the fast-plaid index (centroids, quantised residuals, IVF)
    <folder>/write.lock       serialises writers across processes

Positions are fast-plaid's document numbers: always ``0..n-1`` in SQLite order, renumbered
exactly as fast-plaid renumbers on delete (later documents shift down), and new documents
are appended at the end. Updates are delete + add.

Every write commits SQLite first with ``pending=1``, then changes the PLAID index, then
clears ``pending``. While ``pending`` is set (a write in flight, or a process killed during
one) searches are exact MaxSim over the committed SQLite vectors, and the next writer (or the
next open that can take the write lock) rebuilds the PLAID index from SQLite. Collections
smaller than ``plaid_min_documents`` are searched exactly and get no PLAID index at all.
"""

from __future__ import annotations

import json
import logging
import shutil
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from lfm_retrieval.runtimes.model_thread import on_model_thread
from lfm_retrieval.scoring import maxsim_scores
from lfm_retrieval.stores.base import MultiVectorStore
from lfm_retrieval.stores.filters import Node, predicate
from lfm_retrieval.stores.records import AnySpec, CollectionSpec, Hit, Record

log = logging.getLogger(__name__)

DB_NAME = "records.sqlite"
INDEX_DIR = "plaid"
LOCK_NAME = "write.lock"
_CHUNK = 500  # SQLite parameters per IN (...) list

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS records (
    id TEXT PRIMARY KEY,
    key TEXT NOT NULL,
    payload TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    position INTEGER NOT NULL,
    tokens INTEGER NOT NULL,
    vectors BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_position ON records (position);
"""


def _chunks(items: list[Any]) -> Iterator[list[Any]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


class PlaidMultiVectorStore(MultiVectorStore):
    """ColBERT token vectors in a PLAID index (approximate MaxSim), with exact stable ids.

    ``plaid_min_documents``: below this many records there is no PLAID index and search is
    exact MaxSim (PLAID must train centroids on enough token vectors); the index is built
    when a write reaches it and dropped when a delete goes below half of it.
    ``rerank_depth``: PLAID's top ``max(k, rerank_depth)`` are rescored with exact MaxSim of
    the stored vectors (scores are then exact and comparable with other stores);
    ``rerank=False`` returns PLAID's own approximate scores. ``nbits``, ``kmeans_niters``,
    ``max_points_per_centroid``, ``n_ivf_probe``, ``n_full_scores``, ``seed`` are fast-plaid's
    settings (defaults are PyLate's, except ``n_full_scores``: ``max(1024, 4 * depth)`` candidates
    are decompressed and scored by default, ColBERT's own choice for k <= 100; PyLate's 8192
    suits a GPU and costs several times more per query on a CPU; 256 is ~3x faster but lost
    recall on the test corpus).
    """

    def __init__(
        self,
        folder: str | Path,
        *,
        uri: str | None = None,
        plaid_min_documents: int = 1000,
        rerank: bool = True,
        rerank_depth: int = 32,
        nbits: int = 4,
        kmeans_niters: int = 4,
        max_points_per_centroid: int = 256,
        n_samples_kmeans: int | None = None,
        n_ivf_probe: int = 8,
        n_full_scores: int | None = None,
        seed: int = 42,
        device: str = "cpu",
    ) -> None:
        if plaid_min_documents < 1:
            raise ValueError(f"plaid_min_documents must be >= 1, not {plaid_min_documents!r}")
        if nbits not in (1, 2, 4, 8):
            raise ValueError(f"nbits must be 1, 2, 4 or 8, not {nbits!r}")
        self.folder = Path(folder).expanduser()
        self.uri = uri or f"plaid://{self.folder}"
        self.plaid_min_documents = int(plaid_min_documents)
        self.rerank, self.rerank_depth = bool(rerank), int(rerank_depth)
        self.nbits, self.kmeans_niters, self.max_points_per_centroid = nbits, kmeans_niters, max_points_per_centroid
        self.n_samples_kmeans, self.n_ivf_probe, self.n_full_scores = n_samples_kmeans, n_ivf_probe, n_full_scores
        self.seed, self.device = seed, device
        self._lock = threading.RLock()
        self._con: sqlite3.Connection | None = None
        self._fast_plaid: Any = None
        # Caches of the committed state, refreshed when the stored generation changes.
        self._generation: int | None = None
        self._rows: list[tuple[str, str, dict[str, Any]]] = []  # (id, key, payload) by position
        self._vectors: list[np.ndarray] | None = None  # by position, loaded for exact search only
        self._plaid_count: int | None = None  # documents in the PLAID index on disk

    # -- files --------------------------------------------------------------------------
    @property
    def db_path(self) -> Path:
        return self.folder / DB_NAME

    @property
    def index_path(self) -> Path:
        return self.folder / INDEX_DIR

    def _db(self) -> sqlite3.Connection:
        if self._con is None:
            con = sqlite3.connect(self.db_path, isolation_level=None, check_same_thread=False)
            con.execute("PRAGMA journal_mode=WAL")
            con.execute("PRAGMA synchronous=FULL")
            con.execute("PRAGMA busy_timeout=30000")
            self._con = con
        return self._con

    def _meta(self, name: str, default: str = "") -> str:
        row = self._db().execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return default if row is None else row[0]

    def _set_meta(self, con: sqlite3.Connection, **values: Any) -> None:
        con.executemany(
            "INSERT INTO meta (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [(name, str(value)) for name, value in values.items()],
        )

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        con = self._db()
        con.execute("BEGIN IMMEDIATE")
        try:
            yield con
        except BaseException:
            con.execute("ROLLBACK")
            raise
        con.execute("COMMIT")

    @contextmanager
    def _write_lock(self) -> Iterator[None]:
        from filelock import FileLock  # a dependency of fast-plaid and huggingface-hub

        with self._lock, FileLock(str(self.folder / LOCK_NAME)):
            yield

    # -- schema -------------------------------------------------------------------------
    def _read_spec(self) -> dict[str, Any] | None:
        if not self.db_path.exists():
            return None
        value = self._meta("spec")
        return json.loads(value) if value else None

    def _create(self, spec: AnySpec) -> None:
        if not isinstance(spec, CollectionSpec) or spec.kind != "multivector":
            raise ValueError(f"a PLAID index holds multivector (ColBERT) collections only ({self.uri!r})")
        self.folder.mkdir(parents=True, exist_ok=True)
        con = self._db()
        con.executescript(_SCHEMA)
        with self._transaction() as con:
            self._set_meta(con, spec=json.dumps(spec.as_metadata()), generation=0, indexed=0, pending=0)

    # -- consistency --------------------------------------------------------------------
    def _refresh(self) -> bool:
        """Reload the cached rows if a write committed since; returns whether PLAID search is usable."""
        self._require_spec()
        generation = int(self._meta("generation", "0"))
        if generation != self._generation:
            rows = self._db().execute("SELECT id, key, payload, position FROM records ORDER BY position").fetchall()
            if any(row[3] != position for position, row in enumerate(rows)):
                raise RuntimeError(f"{self.uri!r}: positions in {DB_NAME} are not 0..n-1; the store is corrupt")
            self._rows = [(rid, key, json.loads(payload)) for rid, key, payload, _ in rows]
            self._vectors = None
            self._generation = generation
            self._plaid_count = self._plaid_documents()
            if self._out_of_step() and self._try_reconcile():
                self._plaid_count = self._plaid_documents()
        return self._meta("indexed") == "1" and self._meta("pending") == "0" and self._plaid_count == len(self._rows)

    def _out_of_step(self) -> bool:
        indexed = self._meta("indexed") == "1"
        return (
            self._meta("pending") == "1"
            or (indexed and self._plaid_count != len(self._rows))
            or (not indexed and len(self._rows) >= self.plaid_min_documents)
        )

    def _try_reconcile(self) -> bool:
        """Reconcile now if no other writer holds the lock and fast-plaid is installed."""
        from filelock import FileLock, Timeout

        try:
            _require_fast_plaid()
            with FileLock(str(self.folder / LOCK_NAME), timeout=0):
                self._reconcile_locked()
        except (ImportError, Timeout):
            return False
        return True

    def reconcile(self) -> str:
        """Bring the PLAID index in line with SQLite (after a killed write); returns what was done.

        Takes the write lock. "ok" when nothing was needed, else "rebuilt" or "dropped".
        """
        self._require_spec()
        with self._write_lock():
            return self._reconcile_locked()

    def _reconcile_locked(self) -> str:
        count = self._db().execute("SELECT count(*) FROM records").fetchone()[0]
        indexed, pending = self._meta("indexed") == "1", self._meta("pending") == "1"
        if not pending and indexed and self._plaid_documents() == count:
            return "ok"
        if not pending and not indexed and count < self.plaid_min_documents and not self.index_path.exists():
            return "ok"
        action = "rebuilt" if count >= self.plaid_min_documents or (indexed and count) else "dropped"
        log.warning("%s: PLAID index out of step with %s (pending write or kill); %s", self.uri, DB_NAME, action)
        if action == "rebuilt":
            self._build()
        else:
            self._drop()
        with self._transaction() as con:
            self._set_meta(con, indexed=int(action == "rebuilt"), pending=0)
        return action

    def _plaid_documents(self) -> int | None:
        try:
            meta = json.loads((self.index_path / "metadata.json").read_text())
        except (OSError, ValueError):
            return None
        return int(meta.get("num_documents", -1))

    # -- PLAID --------------------------------------------------------------------------
    def _index(self) -> Any:
        if self._fast_plaid is None:
            from fast_plaid.search import FastPlaid

            self._fast_plaid = FastPlaid(index=str(self.index_path), device=self.device, low_memory=False)
        return self._fast_plaid

    def _release_index(self) -> None:
        if self._fast_plaid is not None:
            self._fast_plaid.close()
            self._fast_plaid = None

    def _drop(self) -> None:
        self._release_index()
        shutil.rmtree(self.index_path, ignore_errors=True)

    @on_model_thread  # fast-plaid's torch work where the encoders' runs: one OpenMP pool
    def _build(self) -> None:
        """Train centroids and index every stored record, in position order."""
        import torch

        self._drop()
        vectors = [torch.from_numpy(v) for v in self._load_vectors()]
        self._index().create(
            documents_embeddings=vectors,
            kmeans_niters=self.kmeans_niters,
            max_points_per_centroid=self.max_points_per_centroid,
            nbits=self.nbits,
            n_samples_kmeans=self.n_samples_kmeans,
            seed=self.seed,
            use_triton_kmeans=False,
        )

    @on_model_thread  # fast-plaid's torch work where the encoders' runs: one OpenMP pool
    def _update_index(self, removed: list[int], added: list[np.ndarray]) -> None:
        import torch

        index = self._index()
        if removed:
            index.delete(sorted(removed))
        if added:
            index.update(
                documents_embeddings=[torch.from_numpy(v) for v in added],
                kmeans_niters=self.kmeans_niters,
                max_points_per_centroid=self.max_points_per_centroid,
                n_samples_kmeans=self.n_samples_kmeans,
                seed=self.seed,
                use_triton_kmeans=False,
            )

    def _load_vectors(self, positions: list[int] | None = None) -> list[np.ndarray]:
        """Stored token vectors (float32) by position: all of them, or those at ``positions``."""
        dtype = np.float16 if self._require_spec().vector_type == "float16" else np.float32
        dim = self.spec.dimension
        if positions is None:
            rows = self._db().execute("SELECT position, tokens, vectors FROM records ORDER BY position").fetchall()
        else:
            rows = []
            for chunk in _chunks(sorted(set(positions))):
                marks = ",".join("?" * len(chunk))
                rows += (
                    self._db()
                    .execute(f"SELECT position, tokens, vectors FROM records WHERE position IN ({marks})", chunk)
                    .fetchall()
                )
        found = {pos: np.frombuffer(blob, dtype=dtype).reshape(n, dim).astype(np.float32) for pos, n, blob in rows}
        return [found[pos] for pos in (positions if positions is not None else sorted(found))]

    # -- writes -------------------------------------------------------------------------
    def _upsert(self, rows: list[tuple[str, Any, Record]]) -> int:
        spec = self._require_spec()
        dtype = np.float16 if spec.vector_type == "float16" else np.float32
        prepared = [
            (rid, record.key, json.dumps(record.payload, ensure_ascii=False), record.fingerprint, matrix.astype(dtype))
            for rid, matrix, record in ((rid, _as_scored(m, spec.distance), r) for rid, m, r in rows)
        ]
        self._write([rid for rid, _, _ in rows], prepared)
        return len(rows)

    def _delete(self, ids: list[str]) -> None:
        self._write(list(dict.fromkeys(ids)), [])

    def _write(self, remove_ids: list[str], new_rows: list[tuple[str, str, str, str, np.ndarray]]) -> None:
        """Replace ``remove_ids`` by ``new_rows``: SQLite commit (pending), PLAID change, clear pending."""
        with self._write_lock():
            self._refresh()
            self._reconcile_locked()
            con = self._db()
            n_before = con.execute("SELECT count(*) FROM records").fetchone()[0]
            indexed = self._meta("indexed") == "1"
            with self._transaction() as con:
                removed: list[int] = []
                for chunk in _chunks(remove_ids):
                    marks = ",".join("?" * len(chunk))
                    removed += [r[0] for r in con.execute(f"SELECT position FROM records WHERE id IN ({marks})", chunk)]
                    con.execute(f"DELETE FROM records WHERE id IN ({marks})", chunk)
                removed.sort()
                if removed:  # fast-plaid's renumbering: every later document moves down by the number removed before it
                    con.execute("CREATE TEMP TABLE IF NOT EXISTS gone (position INTEGER PRIMARY KEY)")
                    con.execute("DELETE FROM gone")
                    con.executemany("INSERT INTO gone VALUES (?)", [(p,) for p in removed])
                    con.execute(
                        "UPDATE records SET position = position - "
                        "(SELECT count(*) FROM gone WHERE gone.position < records.position)"
                    )
                start = n_before - len(removed)
                con.executemany(
                    "INSERT INTO records (id, key, payload, fingerprint, position, tokens, vectors) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [
                        (rid, key, payload, fp, start + i, len(matrix), matrix.tobytes())
                        for i, (rid, key, payload, fp, matrix) in enumerate(new_rows)
                    ],
                )
                n_after = start + len(new_rows)
                plan = self._plan(indexed, n_before, len(removed), n_after)
                if plan in ("build", "update"):
                    _require_fast_plaid()
                generation = int(self._meta("generation", "0")) + 1
                self._set_meta(con, generation=generation, pending=int(plan != "none"))
            if plan == "none":
                return
            try:
                if plan == "drop":
                    self._drop()
                elif plan == "build":
                    self._build()
                else:
                    self._update_index(removed, [row[4].astype(np.float32) for row in new_rows])
            except BaseException:
                self._release_index()  # pending stays set: searches are exact until the next writer rebuilds
                raise
            with self._transaction() as con:
                self._set_meta(con, indexed=int(plan != "drop"), pending=0, generation=generation + 1)

    def _plan(self, indexed: bool, n_before: int, n_removed: int, n_after: int) -> str:
        """What the PLAID index needs after a write: none, drop, build or update."""
        if n_after == 0 or (indexed and n_after < max(1, self.plaid_min_documents // 2)):
            return "drop" if indexed else "none"
        if not indexed:
            return "build" if n_after >= self.plaid_min_documents else "none"
        if n_removed >= n_before:  # everything replaced: fast-plaid cannot delete down to zero documents
            return "build"
        return "update"

    def _update_payloads(self, rows: list[tuple[str, str, dict[str, Any], str]]) -> int:
        encoded = [(json.dumps(payload, ensure_ascii=False), fp, rid) for rid, _, payload, fp in rows]
        with self._write_lock(), self._transaction() as con:
            updated = 0
            for payload, fp, rid in encoded:
                updated += con.execute(
                    "UPDATE records SET payload = ?, fingerprint = ? WHERE id = ?", (payload, fp, rid)
                ).rowcount
            self._set_meta(con, generation=int(self._meta("generation", "0")) + 1)
        return updated

    def rebuild(self) -> None:
        """Retrain centroids and re-index everything (fast-plaid's updates keep the old centroids)."""
        self._require_spec()
        with self._write_lock():
            count = self._db().execute("SELECT count(*) FROM records").fetchone()[0]
            with self._transaction() as con:
                self._set_meta(con, pending=1)
            if count:
                self._build()
            else:
                self._drop()
            with self._transaction() as con:
                self._set_meta(con, indexed=int(count > 0), pending=0)

    # -- reads --------------------------------------------------------------------------
    def _scan_fingerprints(self) -> Iterable[tuple[str, str]]:
        return self._db().execute("SELECT key, fingerprint FROM records").fetchall()

    def _lookup_fingerprints(self, ids: list[str]) -> list[tuple[str, str]]:
        con, found = self._db(), []
        for start in range(0, len(ids), 500):  # SQLite's bound-parameter limit
            chunk = ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            found += con.execute(f"SELECT key, fingerprint FROM records WHERE id IN ({marks})", chunk).fetchall()
        return found

    def _scan_records(self, batch_size: int) -> Iterator[Record]:
        """Every record from the SQLite source of truth (the token vectors as stored), by position."""
        dtype = np.float16 if self._require_spec().vector_type == "float16" else np.float32
        cursor = self._db().execute("SELECT key, payload, fingerprint, tokens, vectors FROM records ORDER BY position")
        while rows := cursor.fetchmany(batch_size):
            for key, payload, fingerprint, n, blob in rows:
                tokens = np.frombuffer(blob, dtype=dtype).reshape(n, self.spec.dimension).astype(np.float32)
                yield Record(key, payload=json.loads(payload), fingerprint=fingerprint, token_vectors=tokens)

    def _count(self, filter: Node | None) -> int:
        with self._lock:
            self._refresh()
            return sum(map(predicate(filter), (payload for _, _, payload in self._rows))) if filter else len(self._rows)

    def _search(self, token_vectors: np.ndarray, k: int, filter: Node | None) -> list[Hit]:
        token_vectors = _as_scored(token_vectors, self._require_spec().distance)
        with self._lock:
            usable = self._refresh()
            rows = self._rows
            holds = predicate(filter)
            allowed = None if filter is None else [i for i, row in enumerate(rows) if holds(row[2])]
            if not rows or allowed == []:
                return []
            if not usable:
                if self._vectors is None:
                    self._vectors = self._load_vectors()
                positions = allowed if allowed is not None else list(range(len(rows)))
                vectors = [self._vectors[p] for p in positions]
                return self._hits(positions, maxsim_scores([token_vectors], vectors)[0], k)
            found = self._plaid_search(token_vectors, max(k, self.rerank_depth) if self.rerank else k, allowed)
            positions = [p for p, _ in found if p < len(rows)]
            if not positions:
                return []
            if self.rerank:
                scores = maxsim_scores([token_vectors], self._load_vectors(positions))[0]
            else:
                scores = np.array([s for p, s in found if p < len(rows)], dtype=np.float32)
            return self._hits(positions, scores, k)

    @on_model_thread  # fast-plaid's torch work where the encoders' runs: one OpenMP pool
    def _plaid_search(self, query: np.ndarray, depth: int, allowed: list[int] | None) -> list[tuple[int, float]]:
        import torch

        # Pre-filter: fast-plaid scores only documents of `subset`, so a selective filter still fills k.
        results = self._index().search(
            queries_embeddings=torch.from_numpy(query)[None],
            top_k=depth,
            batch_size=1 << 18,
            n_full_scores=self.n_full_scores or max(1024, 4 * depth),
            n_ivf_probe=self.n_ivf_probe,
            show_progress=False,
            subset=None if allowed is None else [allowed],
            n_processes=1,
        )
        return [(int(p), float(s)) for p, s in results[0]]

    def _hits(self, positions: list[int], scores: np.ndarray, k: int) -> list[Hit]:
        order = np.argsort(-np.asarray(scores), kind="stable")[:k]
        hits = []
        for i in order:
            rid, key, payload = self._rows[positions[i]]
            hits.append(Hit(rid, key, float(scores[i]), dict(payload)))
        return hits

    @property
    def uses_plaid(self) -> bool:
        """Whether searches go through the PLAID index now (else exact MaxSim)."""
        with self._lock:
            return self._refresh()

    def close(self) -> None:
        with self._lock:
            self._release_index()
            if self._con is not None:
                self._con.close()
                self._con = None
            self._generation = None


def _as_scored(matrix: np.ndarray, distance: str) -> np.ndarray:
    """Token vectors as MaxSim scores them: unit rows for cosine (stored so, as Qdrant does), as given for dot."""
    if distance != "cosine":
        return matrix
    return (matrix / np.maximum(np.linalg.norm(matrix, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def _require_fast_plaid() -> None:
    try:
        import fast_plaid  # noqa: F401
    except ImportError as exc:
        raise ImportError(
            "this write needs a PLAID index, which needs fast-plaid: pip install pylate "
            "(collections below plaid_min_documents work without it); nothing was written"
        ) from exc

"""The Ray engine: the catalog job on Ray Data, with encoders in an actor pool on CPUs or GPUs.

The pipeline (``pip install lfm-retrieval[ray]``)::

    read + prepare + fingerprint (tasks, one per file / Parquet row group)
      -> encode (ActorPoolStrategy: ``workers`` actors, one model load each, CPU or GPU), each
         batch first diffed against the store by one ``Store.fingerprints(keys)`` lookup
      -> write by upsert on stable ids (a Datasink per run for server stores; the driver for
         in-process and embedded stores, which only this process may open)
    then, after a complete read, sync deletes.

Memory: the diff holds one batch of keys per task, never the collection's fingerprints
(stores no worker can open are looked up in one snapshot actor: one copy, ~150 bytes a
record). The driver gathers every read key with its position (for sync deletes and
duplicate reports): ~100 bytes a record, ~1 GB at 10M records.
"""

from __future__ import annotations

import contextlib
import logging
import math
import os
import signal
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lfm_retrieval.catalog.engines.writer import Writer
from lfm_retrieval.catalog.plan import Plan, delete_unread
from lfm_retrieval.catalog.prepare import duplicate
from lfm_retrieval.catalog.sources import file_format
from lfm_retrieval.catalog.summary import Summary, position_order
from lfm_retrieval.catalog.targets import vector_field
from lfm_retrieval.errors import BadRecordError, LFMRetrievalError

if TYPE_CHECKING:
    from lfm_retrieval.catalog.sources import Source
    from lfm_retrieval.stores import Store

logger = logging.getLogger("lfm_retrieval.catalog")
#: Logical CPUs each read / diff / write task asks for: small, so they always find room beside the encoders.
TASK_CPUS = 0.1
#: At most this many blocks (Ray tasks) per run, however large the catalog.
MAX_BLOCKS = 50_000


@dataclass
class RayEngine:
    """Run the job on Ray Data.

    ``address``: a running cluster (``"auto"``, ``"ray://head:10001"``, ``"head:6379"``); None
    joins the runtime this process already has, or starts a local one. ``workers`` encoder
    actors, each with ``cpus_per_worker`` CPUs (torch threads) and ``gpus_per_worker``
    GPUs (> 0: encoders on ``cuda``). ``batch_size`` rows per encode call (None: the job's).
    ``retries``: how often Ray re-runs a task or restarts an actor that died (a killed
    process, a lost node; Ray's own defaults for tasks and Ray Data's for actors are
    changed to this). A record's bad data or a failing store is not retried: the run
    stops with the error, and a re-run resumes from what the store holds.
    Server stores are written by Ray tasks, at most ``workers`` at a time (each new task
    process imports torch and transformers through this package: ~6.5 s of CPU, so more
    writers than encoders cost more than they write; measured: a 120-row run to Milvus on 2
    CPUs 31-34 s with Ray's own limit, 24-26 s with this one). ``driver_writes=True``
    writes from this process even to server stores (workers that cannot reach the database);
    stores only this process may open are always written here.
    ``encoder_options`` go to every encoder built in an actor (e.g. ``{"quantize": "int8"}``).
    ``init_options`` go to ``ray.init`` when this engine starts the runtime.
    """

    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0
    batch_size: int | None = None
    retries: int = 3
    driver_writes: bool = False
    encoder_options: dict[str, Any] = field(default_factory=dict)
    init_options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0 or self.retries < 0:
            raise ValueError("workers >= 1, cpus_per_worker > 0, gpus_per_worker >= 0 and retries >= 0 are required")

    def run(self, job: Plan, source: Source) -> Summary:
        try:
            import ray
        except ImportError as exc:
            raise ImportError("the Ray engine needs Ray: pip install 'lfm-retrieval[ray]'") from exc
        encoders, targets, preparer = job.encoders, job.targets, job.preparer
        started = time.monotonic()
        for target in targets:
            target.store.ensure_collection(target.spec(encoders))
        own_runtime, local = not ray.is_initialized(), None
        try:
            if own_runtime:
                since = time.time()
                ray.init(**({"address": self.address, "log_to_driver": False} | self.init_options))
                local = _LocalRuntime.started(ray, since)
            with ExitStack() as loads:  # index builds deferred to the end of the run (pgvector), as locally
                for target in targets:
                    loads.enter_context(target.store.bulk_load())
                summary, seen = self._pipeline(ray, job, encoders, targets, preparer, source)
        finally:
            if own_runtime:
                with _no_interrupts():  # a second Ctrl+C would leave the runtime's processes behind
                    _shut_down(ray, local)
        self._finish(job, summary, seen)
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

    # -- the pipeline --------------------------------------------------------------------------
    def _pipeline(self, ray: Any, job: Plan, encoders: list, targets: list, preparer: Any, source: Source):
        from lfm_retrieval.catalog.engines import ray_stages as st

        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = bool(job.progress)
        context.actor_task_retry_on_errors = False  # a Python error in a batch is not transient
        context.max_map_retries = 0
        # the error a stage raised (e.g. StoreUnavailableError naming the store), not Ray's UserCodeException
        # wrapper, whose pickled copy on the driver has lost the original as its cause
        context.raise_original_map_exception = True
        task_args = {"num_cpus": TASK_CPUS, "max_retries": self.retries}

        driver_writes = self.driver_writes or not workers_can_write([t.store for t in targets])
        lookups = []
        for target in targets:
            uri, kind = target.store.uri, target.store.kind
            if target.store.shared:
                lookups.append(st.Lookup(uri, kind))
            else:
                snapshot = ray.remote(num_cpus=0, max_restarts=self.retries)(st.fingerprint_snapshot_class())
                lookups.append(st.Lookup(uri, kind, snapshot.remote(target.store.fingerprints())))
        batch_size = self.batch_size or job.batch_size
        prepare = st.Prepare(preparer, tuple(t.identity for t in targets), rows_per_block=batch_size)
        pieces = _pieces(source)
        # About one block per batch (Ray splits each read task's output to reach the count), so
        # every encoder actor gets work even from a single file.
        blocks = max(len(pieces), min(MAX_BLOCKS, math.ceil(sum(p.rows_estimate() for p in pieces) / batch_size)))
        dataset = ray.data.read_datasource(
            st.CatalogDatasource(pieces, prepare), override_num_blocks=blocks, **task_args
        )
        users = [[t for t, target in enumerate(targets) if e in target.encoders] for e in range(len(encoders))]
        with warnings.catch_warnings():  # Ray 2.60 takes max_restarts / max_task_retries only as ray_remote_args
            warnings.simplefilter("ignore", DeprecationWarning)
            dataset = dataset.map_batches(
                st.Encode,
                fn_constructor_kwargs={
                    "diff": st.Diff(tuple(lookups), fail_on_bad=job.on_error == "fail"),
                    "recipes": [self._recipe(encoder) for encoder in encoders],
                    "users": users,
                    "threads": max(1, round(self.cpus_per_worker)),
                },
                compute=ray.data.ActorPoolStrategy(size=self.workers),
                batch_size=batch_size,
                batch_format="pyarrow",
                num_cpus=self._actor_cpus(ray),
                num_gpus=self.gpus_per_worker or None,
                max_restarts=self.retries,
                max_task_retries=self.retries,
            )
        apply = st.Apply(
            tuple(t.encoders for t in targets),
            tuple(vector_field(encoder) for encoder in encoders),
            tuple(encoder.dimension for encoder in encoders),
        )
        try:
            if driver_writes:
                results = self._write_here(dataset, targets, apply)
            else:
                sink = st.StoreSink([(t.store.uri, t.store.kind) for t in targets], apply)
                dataset.write_datasink(
                    sink, ray_remote_args={"num_cpus": TASK_CPUS, "max_retries": self.retries}, concurrency=self.workers
                )
                results = sink.results
        except Exception as exc:
            raise _project_error(exc) from exc
        finally:
            for lookup in lookups:
                if lookup.snapshot is not None:
                    ray.kill(lookup.snapshot)
        summary, seen = Summary(), []
        for part, keys in results:
            summary.add(part)
            seen.extend(keys)
        return summary, seen

    def _write_here(self, dataset: Any, targets: list, apply: Any) -> list:
        """Writes in this process (stores only it may open), overlapped with the pipeline."""
        results: list = []
        stores = [(t.store.uri, t.store) for t in targets]
        with Writer(overlap=True, depth=2) as writer:
            for table in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                writer.submit(lambda table=table: apply(stores, table), results.append)
            writer.drain()
        return results

    def _finish(self, job: Plan, summary: Summary, seen: list[tuple[str, str]]) -> None:
        """Duplicate keys reported, bad records in reading order, then sync deletes (the read was complete)."""
        first: dict[str, str] = {}
        for key, position in sorted(seen, key=lambda item: position_order(item[1])):
            if key in first:
                error = duplicate(position, key)
                summary.bad_records.append((error.position, error.problem + "; the Ray engine kept one of them"))
                summary.failed += 1
            else:
                first[key] = position
        summary.bad_records.sort(key=lambda item: position_order(item[0]))
        for position, problem in summary.bad_records:
            logger.warning("skipped bad record %s: %s", position, problem)
        if job.sync:
            summary.deleted = delete_unread(job, first)

    # -- resources -----------------------------------------------------------------------------
    def _actor_cpus(self, ray: Any) -> float:
        """``cpus_per_worker``, cut so the actors never hold every logical CPU (ray#44687: read and
        write tasks would never be scheduled and the pipeline would hang)."""
        total = float(ray.cluster_resources().get("CPU", 0))
        room = total - 4 * TASK_CPUS  # a read, a diff and a write task, and one more, always fit
        if self.workers * self.cpus_per_worker <= room:
            return self.cpus_per_worker
        if room <= 0:
            raise RuntimeError(f"the Ray cluster has {total:g} CPUs: too few for the catalog pipeline")
        share = math.floor(room / self.workers * 100) / 100
        logger.info(
            "encoder actors ask for %.2f CPUs each (not %.2f): %g CPUs in the cluster",
            share,
            self.cpus_per_worker,
            total,
        )
        return share

    def _recipe(self, encoder: Any) -> Any:
        """How an actor builds its copy of ``encoder``: the driver's spec, on the actors' device, with
        the driver's document precision and no query copy (actors encode documents only)."""
        from lfm_retrieval.catalog.engines.ray_stages import Recipe

        spec = encoder.spec
        if spec is None:
            raise ValueError(
                f"{type(encoder).__name__} over a runtime object has no spec the Ray actors could rebuild it from; "
                "build it from its arguments (or an EncoderSpec)"
            )
        device = "cuda" if self.gpus_per_worker > 0 else "cpu"
        changes: dict[str, Any] = {
            "device": device,
            "batch_size": encoder.batch_size,
            "max_batch_tokens": encoder.max_batch_tokens,
            "quantize": "int8" if device == "cpu" and spec.quantize == "int8" else None,
            **_documents_gguf(encoder),
        }
        return Recipe(type(encoder), spec.replace(**{**changes, **self.encoder_options}))


def _documents_gguf(encoder: Any) -> dict[str, Any]:
    """Where the driver's load chose a GGUF beside the model for documents (runtimes.per_side), the
    spec changes that make the actors load that file, so both engines write the same vectors."""
    from lfm_retrieval.runtimes.base import Side

    choice = getattr(encoder.runtime, "runtime_choice", None)
    chosen = choice[Side.DOCUMENT].chosen if choice else "torch"
    if chosen == "torch":
        return {}
    changes: dict[str, Any] = {"model": str(Path(encoder.spec.model).expanduser() / chosen), "runtime": "auto"}
    prompts = getattr(encoder.runtime, "prompts", None)  # dense: the torch model's own prompts, as the load used
    if encoder.spec.kind == "dense" and prompts:
        changes["prompts"] = {side.value: prompts[side] for side in Side}
    return changes


@dataclass(frozen=True)
class _LocalRuntime:
    """The processes of a local Ray runtime that a run started (never those of a cluster it joined).

    ``ray.shutdown()`` gives the raylet one second to stop its workers, then kills it: on a busy
    machine an encoder actor outlives it, orphaned, and may keep running with its model loaded.
    :meth:`stop` ends what is left after Ray's shutdown: the node's processes (GCS, raylet, ...),
    their descendants, and the processes whose ``RAY_RAYLET_PID`` names this runtime's raylet
    (the workers, also once orphaned), each started after the runtime."""

    node_pids: tuple[int, ...]
    raylet_pid: int | None
    since: float  # time.time() before ray.init: older processes are never the runtime's

    @classmethod
    def started(cls, ray: Any, since: float) -> _LocalRuntime | None:
        """The runtime ``ray.init`` has just started here, or None when it joined a running cluster."""
        node = ray._private.worker._global_node
        processes = getattr(node, "all_processes", None) or {}  # empty for a node that only connects
        if not processes:
            return None
        raylets = processes.get("raylet") or []
        return cls(
            tuple(info.process.pid for infos in processes.values() for info in infos),
            raylets[0].process.pid if raylets else None,
            since,
        )

    def processes(self) -> list[Any]:
        """Its processes still running (zombies excluded), as ``psutil.Process``."""
        import psutil  # Ray ships it (ray/thirdparty_files) when it is not installed

        found: dict[int, psutil.Process] = {}
        for pid in self.node_pids:
            with contextlib.suppress(psutil.Error):
                process = psutil.Process(pid)
                if process.create_time() >= self.since - 1:
                    found.update((p.pid, p) for p in [process, *process.children(recursive=True)])
        if self.raylet_pid is not None:
            mark = str(self.raylet_pid)
            for process in psutil.process_iter(["environ", "create_time"]):
                environ, created = process.info["environ"] or {}, process.info["create_time"] or 0
                if environ.get("RAY_RAYLET_PID") == mark and created >= self.since - 1:
                    found[process.pid] = process
        found.pop(os.getpid(), None)
        return [p for p in found.values() if _running(p)]

    def stop(self, before: Sequence[Any] = (), grace: float = 5.0) -> None:
        """Its processes still running, and those of ``before`` (listed while the raylet ran): SIGTERM,
        SIGKILL to what is left ``grace`` seconds later; returns when none runs (or after another ``grace``)."""
        left = list({p.pid: p for p in [*before, *self.processes()] if _running(p)}.values())
        if left:
            logger.info("stopping %d process(es) the local Ray runtime left behind", len(left))
        for end in ("terminate", "kill"):
            for process in left:
                with contextlib.suppress(Exception):
                    getattr(process, end)()  # psutil checks the pid was not reused
            deadline = time.monotonic() + grace
            while (left := [p for p in left if _running(p)]) and time.monotonic() < deadline:
                time.sleep(0.1)
            if not left:
                return
        logger.warning("processes of the local Ray runtime still running: %s", [p.pid for p in left])


def _shut_down(ray: Any, local: _LocalRuntime | None) -> None:
    """``ray.shutdown()``; then, for a runtime this run started, the end of every process it left."""
    before = local.processes() if local is not None else []  # e.g. the dashboard's own children
    ray.shutdown(wait_for_processes=True)
    if local is not None:
        local.stop(before)


def _running(process: Any) -> bool:
    try:
        return process.is_running() and process.status() != "zombie"
    except Exception:  # psutil.NoSuchProcess / AccessDenied
        return False


@contextlib.contextmanager
def _no_interrupts() -> Iterator[None]:
    """SIGINT ignored meanwhile: in the main thread only (others cannot set handlers), and only
    where the handler is Python's (one set outside Python could not be put back)."""
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def workers_can_write(stores: Sequence[Store]) -> bool:
    """Whether Ray tasks may open and write every one of ``stores`` themselves: each says that many
    processes may open it (``Store.shared``: a database server). Otherwise the driver writes them all."""
    return all(store.shared for store in stores)


def _pieces(source: Source) -> list[Any]:
    """Read tasks' shares: each file (a Parquet file per row group), or slices of an iterable."""
    from lfm_retrieval.catalog.engines.ray_stages import Piece

    if not isinstance(source, (str, Path)):
        items = list(source) if not isinstance(source, Mapping) else [source]
        step = 4096
        return [Piece(f"items{i}", items=tuple(items[i : i + step]), first=i) for i in range(0, len(items), step)]
    import pyarrow.fs as pafs

    text = str(source)
    if "://" in text:
        filesystem, path = pafs.FileSystem.from_uri(text)
    else:
        filesystem, path = pafs.LocalFileSystem(), os.path.abspath(text)
    info = filesystem.get_file_info(path)
    if info.type == pafs.FileType.NotFound:
        raise FileNotFoundError(f"catalog file {text!r} does not exist")
    if info.type == pafs.FileType.Directory:
        found = filesystem.get_file_info(pafs.FileSelector(path, recursive=True))
        files = sorted(f.path for f in found if f.type == pafs.FileType.File and _known(f.path))
        if not files:
            raise FileNotFoundError(f"catalog folder {text!r} holds no .jsonl, .csv or .parquet file")
    else:
        files = [path]
    pieces = []
    for file in files:
        kind, name = file_format(file), file.rsplit("/", 1)[-1]
        if kind == "parquet":
            import pyarrow.parquet as pq

            with filesystem.open_input_file(file) as handle:
                groups = pq.ParquetFile(handle).num_row_groups
            pieces += [Piece(name, kind, file, filesystem, (g,)) for g in range(groups)] or [
                Piece(name, kind, file, filesystem, ())
            ]
        else:
            pieces.append(Piece(name, kind, file, filesystem))
    return pieces


def _known(path: str) -> bool:
    try:
        file_format(path)
    except ValueError:
        return False
    return True


def _project_error(exc: BaseException) -> BaseException:
    """The project error inside Ray's wrappers (RayTaskError, UserCodeException), or ``exc``."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        current = stack.pop()
        if current is None or id(current) in seen:
            continue
        seen.add(id(current))
        if isinstance(current, (LFMRetrievalError, BadRecordError)):
            return current
        stack += [getattr(current, "cause", None), current.__cause__, current.__context__]
    return exc

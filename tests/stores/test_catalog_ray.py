"""The catalog job on Ray Data gives the local engine's stores, resumes, and survives killed workers.

All tests share one 2-CPU Ray runtime (``ray_runtime``): every run here is also a run on
2 logical CPUs with encoder actors that would otherwise take them all (the hang trap).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytestmark = pytest.mark.one_stack  # the Ray engine is the same code on both stacks (CI time)
ray = pytest.importorskip("ray")

from lfm_retrieval import ColBERTEncoder, DenseEncoder  # noqa: E402
from lfm_retrieval.catalog import CatalogJob, LocalEngine  # noqa: E402
from lfm_retrieval.catalog.engines import RayEngine  # noqa: E402
from lfm_retrieval.stores import open_store  # noqa: E402

TEXT, KEY, PAYLOAD = "{title}. {description}", "{sku}/{locale}", ["sku", "price", "attributes.colour"]
N = 120
CHILD = Path(__file__).parent / "ray_catalog_child.py"


def catalog(n: int = N) -> list[dict[str, Any]]:
    return [
        {
            "sku": f"SKU-{i:04d}",
            "locale": ["en", "de", "fr"][i % 3],
            "title": f"Product {i}",
            "description": "fine words " * (i % 7 + 1),
            "price": i * 1.5,
            "attributes": {"colour": ["red", "blue"][i % 2]},
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[Any], bad_at: int | None = None) -> Path:
    lines = [json.dumps(r) for r in rows]
    if bad_at is not None:
        lines.insert(bad_at, "{not json")
    path.write_text("\n".join(lines) + "\n")
    return path


def job(encoder, store, engine, **kwargs) -> CatalogJob:
    return CatalogJob(encoder, store, text=TEXT, key=KEY, payload=PAYLOAD, batch_size=16, progress=False,
                      engine=engine, **kwargs)  # fmt: skip


def ray_engine(**kwargs) -> RayEngine:
    return RayEngine(workers=2, cpus_per_worker=1.0, **kwargs)


# -- what a store holds, read raw (ids, keys, fingerprints, payloads, vectors) ----------------
def dump(store) -> dict[str, tuple[str, str, dict, Any]]:
    """key -> (id, fingerprint, payload, vectors) of every record, read from the database itself."""
    name = type(store).__module__
    if name.startswith("lfm_retrieval.stores.memory"):
        rows = store._data["rows"]
        return {key: (rid, fp, payload, vectors) for rid, (key, vectors, payload, fp) in rows.items()}
    if name.startswith("lfm_retrieval_qdrant"):
        from lfm_retrieval_qdrant.collection import FINGERPRINT_FIELD, KEY_FIELD

        points, offset, out = [], None, {}
        while True:
            page, offset = store.client.scroll(store.collection_name, limit=256, offset=offset, with_vectors=True)
            points += page
            if offset is None:
                break
        for p in points:
            payload = {k: v for k, v in p.payload.items() if k not in (KEY_FIELD, FINGERPRINT_FIELD)}
            out[p.payload[KEY_FIELD]] = (str(p.id), p.payload[FINGERPRINT_FIELD], payload, p.vector)
        return out
    if name.startswith("lfm_retrieval_pgvector"):
        with store._transaction() as conn:
            rows = conn.execute(
                f"SELECT id, key, fingerprint, metadata, embedding FROM {store.layout.qualified.as_string(conn)}"
            ).fetchall()
        return {key: (str(rid), fp, meta, np.asarray(vec)) for rid, key, fp, meta, vec in rows}
    if name.startswith("lfm_retrieval_milvus"):
        rows = store.client.query(store.collection, filter='id != ""', output_fields=["*"], consistency_level="Strong")
        return {r["key"]: (r["id"], r["fingerprint"], r["metadata"], np.asarray(r["vector"])) for r in rows}
    raise AssertionError(f"no raw reader for {name}")


def max_diff(a: Any, b: Any) -> float:
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        return max(max_diff(a[k], b[k]) for k in a)
    if isinstance(a, (tuple, list)) and a and isinstance(a[0], np.ndarray):
        return max(max_diff(x, y) for x, y in zip(a, b, strict=True))
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape
    return float(np.abs(a - b).max())


def assert_same_store(local, ray_store) -> None:
    left, right = dump(local), dump(ray_store)
    assert left.keys() == right.keys() and len(left) > 0
    for key in left:
        (lid, lfp, lpayload, lvec), (rid, rfp, rpayload, rvec) = left[key], right[key]
        assert (lid, lfp, lpayload) == (rid, rfp, rpayload), key
        assert max_diff(lvec, rvec) < 1e-5, key


def pg_uri(dsn: str, table: str) -> str:
    return f"{dsn}{'&' if '?' in dsn else '?'}table={table}"


def name() -> str:
    return f"ray_{uuid.uuid4().hex[:10]}"


@pytest.fixture
def dense_encoder(dense_path):
    return DenseEncoder(str(dense_path), device="cpu", batch_size=8)


@pytest.fixture
def colbert_encoder(colbert_path):
    return ColBERTEncoder(str(colbert_path), device="cpu", batch_size=8)


# -- identical stores --------------------------------------------------------------------------
def test_hybrid_into_embedded_qdrant_matches_local_and_reports_a_bad_record(
    ray_runtime, dense_encoder, colbert_encoder, tmp_path
):
    pytest.importorskip("lfm_retrieval_qdrant")
    source = write_jsonl(tmp_path / "catalog.jsonl", catalog(), bad_at=37)
    stores = [open_store(f"qdrant+local://{tmp_path / engine}/{name()}", kind="hybrid") for engine in ("l", "r")]
    summaries = [
        job(dense_encoder, store, engine, colbert=colbert_encoder).run(source)
        for store, engine in zip(stores, [LocalEngine(), ray_engine()], strict=True)
    ]
    local, remote = summaries
    assert (
        remote.bad_records
        == local.bad_records
        == [("catalog.jsonl:38", "is not valid JSON (Expecting property name enclosed in double quotes)")]
    )
    assert (remote.read, remote.encoded, remote.written, remote.failed) == (N + 1, N, N, 1)
    assert_same_store(*stores)
    for store in stores:
        store.close()


def test_dense_into_postgres_and_colbert_into_embedded_qdrant_match_local(
    ray_runtime, dense_encoder, colbert_encoder, postgres_dsn, tmp_path
):
    pytest.importorskip("lfm_retrieval_pgvector")
    pytest.importorskip("lfm_retrieval_qdrant")
    rows = catalog()
    pairs = []
    for engine in (LocalEngine(), ray_engine()):
        dense_store = open_store(pg_uri(postgres_dsn, name()))
        colbert_store = open_store(f"qdrant+local://{tmp_path / name()}/c", kind="multivector")
        summary = job(dense_encoder, dense_store, engine, colbert=colbert_encoder, colbert_store=colbert_store).run(
            rows
        )
        assert (summary.encoded, summary.written) == (N, 2 * N)
        pairs.append((dense_store, colbert_store))
    assert_same_store(pairs[0][0], pairs[1][0])
    assert_same_store(pairs[0][1], pairs[1][1])
    for pair in pairs:
        for store in pair:
            store.close()


def test_hybrid_and_multivector_into_postgres_match_local(ray_runtime, dense_encoder, colbert_encoder, postgres_dsn):
    """The ColBERT kinds on PostgreSQL: the Ray engine's workers write them as the local engine does."""
    pytest.importorskip("lfm_retrieval_pgvector")
    pytest.importorskip("fastembed")  # the multivector kind's MUVERA first stage
    rows = catalog()
    for kind in ("hybrid", "multivector"):
        encoder, colbert = (dense_encoder, colbert_encoder) if kind == "hybrid" else (colbert_encoder, None)
        stores = [open_store(pg_uri(postgres_dsn, name()), kind=kind) for _ in range(2)]
        for store, engine in zip(stores, [LocalEngine(), ray_engine()], strict=True):
            summary = job(encoder, store, engine, colbert=colbert).run(rows)
            assert (summary.encoded, summary.written) == (N, N), kind
        # read back through the store (its token vectors live in its own layout)
        local, remote = ({r.key: r for r in store.scan()} for store in stores)
        assert local.keys() == remote.keys() and len(local) == N
        for key, record in local.items():
            other = remote[key]
            assert (record.id, record.fingerprint, record.payload) == (other.id, other.fingerprint, other.payload)
            assert max_diff(record.token_vectors, other.token_vectors) < 1e-5, key
            if kind == "hybrid":
                assert max_diff(record.vector, other.vector) < 1e-5, key
        for store in stores:
            store.close()


def test_colbert_alone_into_embedded_qdrant_matches_local(ray_runtime, colbert_encoder, tmp_path):
    pytest.importorskip("lfm_retrieval_qdrant")
    rows = catalog(40)
    stores = [open_store(f"qdrant+local://{tmp_path / name()}/c", kind="multivector") for _ in range(2)]
    for store, engine in zip(stores, [LocalEngine(), ray_engine()], strict=True):
        assert job(colbert_encoder, store, engine).run(rows).encoded == 40
    assert_same_store(*stores)
    for store in stores:
        store.close()


def test_milvus_dense_matches_local_then_reruns_encode_only_changes_and_sync_deletes(
    ray_runtime, dense_encoder, milvus_uri
):
    """Servers only: lookups and writes happen in Ray tasks (a Datasink), not in this process."""
    pytest.importorskip("lfm_retrieval_milvus")
    rows = catalog()
    local = open_store(f"{milvus_uri.rstrip('/')}/{name()}")
    remote = open_store(f"{milvus_uri.rstrip('/')}/{name()}")
    job(dense_encoder, local, LocalEngine()).run(rows)
    ray_job = job(dense_encoder, remote, ray_engine())
    first = ray_job.run(rows)
    assert (first.read, first.encoded, first.written, first.unchanged) == (N, N, N, 0)
    assert_same_store(local, remote)

    again = ray_job.run(rows)
    assert (again.encoded, again.unchanged, again.written) == (0, N, 0)

    changed = [dict(r) for r in rows]
    for r in changed[:6]:  # 5 %
        r["description"] += " Now improved."
    removed = changed.pop(50), changed.pop(80)
    ray_job.sync = True
    third = ray_job.run(changed)
    assert (third.encoded, third.unchanged, third.deleted) == (6, N - 8, 2)
    stored = remote.fingerprints()
    assert set(stored) == {f"{r['sku']}/{r['locale']}" for r in changed}
    assert not {f"{r['sku']}/{r['locale']}" for r in removed} & set(stored)
    local.close()
    remote.close()


# -- faults ------------------------------------------------------------------------------------
def dying_encoder_class(marker: Path) -> type:
    """A DenseEncoder whose process SIGKILLs itself on its 3rd document batch, once (a marker file)."""

    class DyingDenseEncoder(DenseEncoder):
        calls = 0

        def encode_documents(self, texts):
            type(self).calls += 1
            if type(self).calls == 3 and not marker.exists():
                marker.write_text(str(os.getpid()))
                os.kill(os.getpid(), signal.SIGKILL)
            return super().encode_documents(texts)

    return DyingDenseEncoder


def test_a_killed_encoder_actor_is_replaced_and_its_batch_redone(ray_runtime, dense_path, tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    marker = tmp_path / "killed"
    encoder = dying_encoder_class(marker)(str(dense_path), device="cpu", batch_size=8)
    store = open_store(f"memory://{name()}")
    summary = job(encoder, store, ray_engine()).run(catalog())
    assert marker.exists(), "the actor was not killed"
    assert (summary.encoded, summary.written, summary.read) == (N, N, N), "each record encoded and stored once"
    assert store.count() == N
    assert set(store.fingerprints()) == {f"{r['sku']}/{r['locale']}" for r in catalog()}


def test_a_driver_killed_mid_run_leaves_a_store_the_rerun_finishes(ray_runtime, dense_path, postgres_dsn, tmp_path):
    """The driver (a child process on the session's cluster) is SIGKILLed after its 3rd written batch."""
    pytest.importorskip("lfm_retrieval_pgvector")
    source = write_jsonl(tmp_path / "catalog.jsonl", catalog())
    uri = pg_uri(postgres_dsn, name())
    env = dict(os.environ, RAY_ADDRESS=ray_runtime)
    args = [sys.executable, str(CHILD), str(dense_path), uri, str(source)]
    killed = subprocess.run([*args, "3"], capture_output=True, text=True, timeout=600, env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-3000:]
    store = open_store(uri)
    before = store.count()
    assert 0 < before < N
    resumed = subprocess.run([*args, "0"], capture_output=True, text=True, timeout=600, env=env)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    counts = json.loads(resumed.stdout.strip().splitlines()[-1])
    assert (counts["unchanged"], counts["encoded"]) == (before, N - before), "only what was missing is encoded"
    assert store.count() == N
    store.close()


def test_ray_is_optional_and_the_runtime_has_two_cpus(ray_runtime):
    assert ray.cluster_resources()["CPU"] == 2
    code = "import lfm_retrieval.catalog, lfm_retrieval.cli, sys; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip() == "False", out.stderr


def test_cli_index_with_the_ray_engine(ray_runtime, dense_path, tmp_path):
    from typer.testing import CliRunner

    from lfm_retrieval.cli import app

    source = write_jsonl(tmp_path / "catalog.jsonl", catalog(30))
    store = f"memory://{name()}"
    args = ["index", str(source), "--store", store, "--model", str(dense_path), "--json"]
    result = CliRunner().invoke(app, [*args, "--engine", "ray", "--workers", "2"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout[result.stdout.index("{") :])
    assert (summary["read"], summary["encoded"], summary["written"]) == (30, 30, 30)
    assert open_store(store).count() == 30


def _processes_under(folder: str) -> list[int]:
    ps = subprocess.run(["ps", "-ww", "-eo", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in ps.splitlines() if folder in line]


def test_a_two_node_cluster_on_one_machine(ray_runtime, dense_path, postgres_dsn, tmp_path):
    """``ray start --head`` and ``ray start --address`` (two raylets on this machine), a driver joining it."""
    import shutil
    import tempfile
    import time

    from lfm_retrieval.testing.servers import free_port

    pytest.importorskip("lfm_retrieval_pgvector")
    ray_cli = Path(sys.executable).with_name("ray")
    temp = tempfile.mkdtemp(prefix="lfm-ray2-")
    port = free_port()
    env = dict(os.environ, RAY_AUTH_MODE="disabled")
    common = ["--num-cpus=1", f"--temp-dir={temp}", "--disable-usage-stats"]
    try:
        head = subprocess.run([str(ray_cli), "start", "--head", f"--port={port}", "--include-dashboard=false",
                               *common], capture_output=True, text=True, timeout=180, env=env)  # fmt: skip
        if head.returncode != 0:
            pytest.skip(f"ray start --head failed here: {head.stderr[-500:]}")
        node = subprocess.run([str(ray_cli), "start", f"--address=127.0.0.1:{port}", *common],
                              capture_output=True, text=True, timeout=180, env=env)  # fmt: skip
        if node.returncode != 0:
            pytest.skip(f"ray start --address failed here: {node.stderr[-500:]}")
        source = write_jsonl(tmp_path / "catalog.jsonl", catalog(40))
        uri = pg_uri(postgres_dsn, name())
        child = [sys.executable, str(CHILD), str(dense_path), uri, str(source), "0"]
        done = subprocess.run(child, capture_output=True, text=True, timeout=600,
                              env=dict(env, RAY_ADDRESS=f"127.0.0.1:{port}"))  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:]
        summary = json.loads(done.stdout.strip().splitlines()[-1])
        assert (summary["encoded"], summary["written"]) == (40, 40)
        store = open_store(uri)
        assert store.count() == 40
        store.close()
    finally:
        for pid in _processes_under(temp):  # only this cluster's processes (never `ray stop`: it stops every Ray)
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while _processes_under(temp) and time.monotonic() < deadline:
            time.sleep(0.5)
        for pid in _processes_under(temp):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        shutil.rmtree(temp, ignore_errors=True)


def test_a_store_that_stops_answering_fails_the_run_naming_it_and_a_rerun_resumes(
    ray_runtime, dense_encoder, tmp_path, monkeypatch
):
    """A private PostgreSQL stopped after the 2nd written batch; started again, the re-run finishes."""
    pytest.importorskip("lfm_retrieval_pgvector")
    from lfm_retrieval.catalog.engines import ray_stages
    from lfm_retrieval.errors import StoreUnavailableError
    from lfm_retrieval.testing.servers import embedded_postgres

    rows = catalog(80)
    server = contextlib.ExitStack()
    uri = pg_uri(server.enter_context(embedded_postgres(tmp_path / "pg")), "products")
    original, calls = ray_stages.Apply.__call__, {"n": 0}

    def stop_after_two(self, stores, table):
        result = original(self, stores, table)
        calls["n"] += 1
        if calls["n"] == 2:
            server.close()  # the database goes away mid-run
        return result

    monkeypatch.setattr(ray_stages.Apply, "__call__", stop_after_two)
    store = open_store(uri, timeout=2)  # the stopped server is named within 2 s, not the default 10
    with pytest.raises(StoreUnavailableError, match="products"):
        job(dense_encoder, store, ray_engine(driver_writes=True)).run(rows)
    monkeypatch.undo()
    with embedded_postgres(tmp_path / "pg") as dsn:
        store = open_store(pg_uri(dsn, "products"))
        written = store.count()
        assert written >= 32
        summary = job(dense_encoder, store, ray_engine()).run(rows)
        assert (summary.unchanged, summary.encoded) == (written, 80 - written)
        assert store.count() == 80
        store.close()

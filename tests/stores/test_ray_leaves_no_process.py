"""``lfm-retrieval index --engine ray`` without ``--ray-address`` starts a local Ray runtime for the
run; when the command returns, none of that runtime's processes may still run: after success,
after an error raised in the workers, and after SIGINT.

Each run is the CLI in a child process with a marker in its environment, which every process of
its runtime inherits (GCS, raylet, dashboard, encoder actors, also once orphaned); the listing is
taken as the command returns. Ray's own ``ray.shutdown()`` gives the raylet one second before it
kills it, and an encoder actor still loading then outlives it (seen here seconds, by users half an
hour): an orphan that ends later is still one this run left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_stack  # the Ray engine is the same code on both stacks (CI time)
ray = pytest.importorskip("ray")
import psutil  # noqa: E402  (after ray, which ships it when it is not installed)

MARKER = "LFM_RAY_TEST_RUN"


def sample_catalog(rows: int | None, folder: Path) -> Path:
    lines = files("lfm_retrieval").joinpath("data/sample_catalog.jsonl").read_text().splitlines()
    path = folder / "catalog.jsonl"
    path.write_text("\n".join(lines[:rows]) + "\n")
    return path


def run_processes(marker: str) -> list[psutil.Process]:
    """Every running (not zombie) process whose environment carries ``marker``."""
    return [
        process
        for process in psutil.process_iter(["environ", "cmdline", "status"])
        if (process.info["environ"] or {}).get(MARKER) == marker and process.info["status"] != psutil.STATUS_ZOMBIE
    ]


def describe(process: psutil.Process) -> str:
    return f"{process.pid} {' '.join(process.info['cmdline'] or [])[:80]}"


@dataclass
class Run:
    process: subprocess.Popen
    marker: str
    ray_tmpdir: str

    def finish(self) -> tuple[int, str, str]:
        """Waits for the command; asserts that none of its runtime's processes runs once it returned."""
        out, err = self.process.communicate(timeout=300)
        left = run_processes(self.marker)
        for process in left:  # listed, then ended: a failing test leaves nothing behind either
            with contextlib.suppress(psutil.NoSuchProcess):
                process.kill()
        psutil.wait_procs(left, timeout=10)
        shutil.rmtree(self.ray_tmpdir, ignore_errors=True)
        assert not left, f"processes of the run still running after it returned: {[describe(p) for p in left]}"
        return self.process.returncode, out, err


def start_cli(dense_path: Path, catalog: Path, *extra: str) -> Run:
    marker = uuid.uuid4().hex
    temp = tempfile.mkdtemp(prefix="lfm-rayp-")  # short: Ray's Unix socket paths must fit 107 bytes
    # RAY_TMPDIR: its own session folder, so it can never join another test's runtime
    env = dict(os.environ, RAY_AUTH_MODE="disabled", RAY_TMPDIR=temp, **{MARKER: marker})
    env.pop("RAY_ADDRESS", None)
    args = ["index", str(catalog), "--store", f"memory://{marker}", "--model", str(dense_path), "--json"]
    command = [sys.executable, "-m", "lfm_retrieval.cli", *args, "--engine", "ray", "--workers", "2", *extra]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return Run(process, marker, temp)


def test_a_successful_run_leaves_no_process(dense_path, tmp_path):
    # 30 rows: one batch, so the second encoder actor is still loading when the run ends
    returncode, out, err = start_cli(dense_path, sample_catalog(30, tmp_path)).finish()
    assert returncode == 0, err[-3000:]
    assert json.loads(out[out.index("{") :])["written"] == 30


def test_a_run_failing_in_the_workers_leaves_no_process(dense_path, tmp_path):
    run = start_cli(dense_path, sample_catalog(30, tmp_path), "--text", "{nosuch}", "--on-error", "fail")
    returncode, _, err = run.finish()
    assert returncode == 2 and "has no field 'nosuch'" in err, err[-3000:]


def test_an_interrupted_run_leaves_no_process(dense_path, tmp_path):
    """SIGINT (Ctrl+C) once an encoder actor runs: the KeyboardInterrupt path."""
    run = start_cli(dense_path, sample_catalog(None, tmp_path), "--batch-size", "8")
    deadline = time.monotonic() + 240
    while run.process.poll() is None and time.monotonic() < deadline:
        if any("MapWorker" in describe(process) for process in run_processes(run.marker)):
            break
        time.sleep(0.2)
    assert run.process.poll() is None, "the run ended before an encoder actor started"
    run.process.send_signal(signal.SIGINT)
    returncode, out, err = run.finish()
    assert returncode != 0 and '"written"' not in out, err[-3000:]

"""All model work of a process runs on one thread (one OpenMP pool): loading, calibration, every batch."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.runtimes.model_thread import model_thread_id, on_model_thread, run_on_model_thread

QUERIES = ["waterproof trail shoes", "blue kettle", "warm winter jacket for kids", "usb-c charger"]


def forward_threads(model: torch.nn.Module) -> set[int]:
    """Records the thread of every forward pass of ``model`` from now on (through its first Linear
    layer: sentence-transformers 5.3 calls its own ``forward`` directly, past any hook on the model)."""
    seen: set[int] = set()
    first_linear = next(m for m in model.modules() if isinstance(m, torch.nn.Linear))
    first_linear.register_forward_pre_hook(lambda *_: seen.add(threading.get_ident()))
    return seen


@pytest.mark.parametrize("kind", ["dense", "colbert"])
def test_loading_and_every_call_run_on_the_model_thread(
    kind: str, dense_path: Path, colbert_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    loaded_on: list[int] = []
    original = torch.nn.Module.to

    def recording_to(self, *args, **kwargs):  # place() moves the model: that is part of loading
        loaded_on.append(threading.get_ident())
        return original(self, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(torch.nn.Module, "to", recording_to)
        encoder = DenseEncoder(str(dense_path)) if kind == "dense" else ColBERTEncoder(str(colbert_path))
    assert loaded_on and set(loaded_on) == {model_thread_id()}
    assert model_thread_id() != threading.get_ident()

    seen = forward_threads(encoder.model)
    reference = [np.asarray(v) for v in encoder.stream_queries(QUERIES)]
    encoder.encode_documents(QUERIES)
    with ThreadPoolExecutor(4) as pool:  # through the micro-batcher, from four threads
        got = list(pool.map(lambda q: encoder.encode_queries([q])[0], QUERIES))
    got_async = asyncio.run(encoder.aencode_queries(QUERIES))
    assert seen == {model_thread_id()}
    for vector, again, expected in zip(got, got_async, reference, strict=True):
        np.testing.assert_allclose(vector, expected, rtol=0, atol=1e-6)
        np.testing.assert_allclose(again, expected, rtol=0, atol=1e-6)


def test_queries_from_the_model_thread_itself_do_not_wait_for_it(dense_path: Path) -> None:
    """The micro-batcher hands its calls to the model thread: called there, encode_queries runs directly."""
    encoder = DenseEncoder(str(dense_path))
    expected = encoder.encode_queries(QUERIES)
    done: list[np.ndarray] = []
    caller = threading.Thread(target=lambda: done.append(run_on_model_thread(encoder.encode_queries, QUERIES)))
    caller.start()
    caller.join(timeout=60)
    assert not caller.is_alive(), "encode_queries on the model thread waited for the model thread"
    np.testing.assert_allclose(done[0], expected, rtol=0, atol=1e-6)
    got = run_on_model_thread(lambda: asyncio.run(encoder.aencode_queries(QUERIES)))
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_calls_return_raise_nest_and_follow_the_callers_thread_count() -> None:
    @on_model_thread
    def where(x: int) -> tuple[int, int, int]:
        return x * 2, threading.get_ident(), torch.get_num_threads()

    assert where(21)[:2] == (42, model_thread_id())
    assert run_on_model_thread(where, 1)[1] == model_thread_id()  # nested: runs directly, no deadlock
    with pytest.raises(ZeroDivisionError):
        run_on_model_thread(lambda: 1 / 0)
    threads = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        assert where(0)[2] == 1
    finally:
        torch.set_num_threads(threads)
    assert where(0)[2] == threads


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork: POSIX only")
def test_a_forked_child_gets_a_model_thread_of_its_own() -> None:
    parent_thread = run_on_model_thread(threading.get_ident)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its copy of the executor has no thread; a new one must start
        signal.alarm(30)
        try:
            ident = run_on_model_thread(threading.get_ident)
            os.write(write, b"ok" if ident == model_thread_id() != threading.get_ident() else b"wrong")
        finally:
            os._exit(0)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    assert os.read(read, 16) == b"ok" and status == 0
    assert run_on_model_thread(threading.get_ident) == parent_thread


def test_an_atexit_handler_can_still_encode(dense_path: Path) -> None:
    """At exit the model thread's executor takes no new work: a handler that flushes its last
    documents (a writer, a catalog job) encodes on its own thread instead of failing."""
    script = (
        "import atexit; from lfm_retrieval import DenseEncoder\n"
        f"encoder = DenseEncoder({str(dense_path)!r})\n"
        "atexit.register(lambda: print('at exit', encoder.encode_documents(['blue kettle']).shape))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "at exit (1, " in done.stdout, done.stderr[-2000:]

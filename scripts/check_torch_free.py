"""A user's torch-free install, end to end: run by scripts/check_distributions.py in a fresh venv holding
lfm-retrieval, lfm-retrieval-pgvector, lfm-retrieval-qdrant[edge] and langchain-lfm from their wheels (no torch).

    python scripts/check_torch_free.py --server-python .venvs/latest/bin/python

Checks that torch, transformers and sentence-transformers are not installed and that the packages are the
installed wheels (not a source tree); that ``DenseEncoder("some/model")`` fails in one line naming
``lfm-retrieval[torch]``; then starts ``lfm-retrieval serve`` on a tiny dense checkpoint with the
``--server-python`` venv (which has the torch runtime), indexes a small catalog into ``qdrant+edge://``
with this venv's ``lfm-retrieval index --base-url`` and searches it, and embeds through LangChain's
``LFMEmbeddings(base_url=...)``. Prints one summary line; exits 1 with one line naming the failure.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import json
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MODEL_LIBRARIES = ("torch", "transformers", "sentence_transformers")
PACKAGES = ("lfm_retrieval", "lfm_retrieval_pgvector", "lfm_retrieval_qdrant", "langchain_lfm")
CATALOG = [
    {"sku": "A1", "locale": "en", "title": "Red running shoes", "description": "Lightweight shoes for road running"},
    {"sku": "A2", "locale": "de", "title": "Blauer Wasserkocher", "description": "Elektrischer Wasserkocher"},
    {"sku": "A3", "locale": "fr", "title": "Lampe de bureau", "description": "Lampe LED orientable"},
    {"sku": "A4", "locale": "en", "title": "Garden hose", "description": "Flexible 20 m hose for the garden"},
]
SERVER_START_S = 180  # importing torch and transformers on a loaded CI machine
KEYS = {f"{row['sku']}/{row['locale']}" for row in CATALOG}
# In the server's venv: build the tiny checkpoint, then serve it (one interpreter: torch is imported once).
SERVE_TINY_MODEL = """
import sys
from lfm_retrieval.cli import main
from lfm_retrieval.testing import build_dense_checkpoint
model, port = sys.argv[1:]
build_dense_checkpoint(model)
sys.argv = ["lfm-retrieval", "serve", "--model", model, "--port", port]
main()
"""


class CheckFailed(Exception):
    """One line naming what went wrong."""


def free_port() -> int:
    # lfm_retrieval.testing.servers has one, but its package imports the checkpoint builders (torch)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def check_install() -> None:
    """No model library installed; every package imported from this venv's site-packages, not a source tree."""
    present = [name for name in MODEL_LIBRARIES if importlib.util.find_spec(name) is not None]
    if present:
        raise CheckFailed(f"model libraries installed without the [torch] extra: {', '.join(present)}")
    for name in PACKAGES:
        origin = Path(importlib.import_module(name).__file__).resolve()
        if not origin.is_relative_to(Path(sys.prefix).resolve()) or "site-packages" not in origin.parts:
            raise CheckFailed(f"{name} imported from {origin}, not from this venv's site-packages")


def check_missing_runtime_message() -> None:
    from lfm_retrieval import DenseEncoder
    from lfm_retrieval.errors import ModelLoadError

    try:
        DenseEncoder("some/model")
    except ModelLoadError as exc:
        message = str(exc)
        if "lfm-retrieval[torch]" not in message or len(message.splitlines()) != 1:
            raise CheckFailed(
                f"DenseEncoder without torch: {message!r} is not one line naming lfm-retrieval[torch]"
            ) from None
    else:
        raise CheckFailed("DenseEncoder('some/model') loaded a model without torch installed")


def cli(*args: str) -> object:
    """This venv's ``lfm-retrieval`` with ``--json``: the parsed output."""
    command = [str(Path(sys.executable).parent / "lfm-retrieval"), *args, "--json"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode:
        tail = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise CheckFailed(f"lfm-retrieval {args[0]} exited {done.returncode}: {tail}")
    return json.loads(done.stdout)


def start_server(server_python: Path, model: Path, log: Path) -> tuple[subprocess.Popen, str]:
    """``lfm-retrieval serve`` on a tiny dense checkpoint written to ``model``: the process and its URL."""
    port = free_port()
    command = [str(server_python), "-c", SERVE_TINY_MODEL, str(model), str(port)]
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    import httpx  # langchain-lfm's dependency

    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise CheckFailed(f"lfm-retrieval serve exited {server.returncode}: {log.read_text().strip()[-300:]}")
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return server, url
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    server.kill()
    tail = (log.read_text().strip().splitlines() or ["(no output)"])[-1]
    raise CheckFailed(f"lfm-retrieval serve did not answer /health on {url} within {SERVER_START_S} s: {tail}")


def check_catalog_job(url: str, folder: Path) -> str:
    catalog = folder / "catalog.jsonl"
    catalog.write_text("".join(json.dumps(row) + "\n" for row in CATALOG))
    store = f"qdrant+edge://{folder / 'index' / 'products'}"
    summary = cli("index", str(catalog), "--base-url", url, "--store", store, "--payload", "locale")
    if summary["written"] != len(CATALOG) or summary["failed"]:
        raise CheckFailed(f"lfm-retrieval index wrote {summary['written']} of {len(CATALOG)} records: {summary}")
    hits = cli("search", "garden hose", "--base-url", url, "--store", store)
    if {hit["key"] for hit in hits} != KEYS:
        raise CheckFailed(f"search found {sorted(hit['key'] for hit in hits)}, expected {sorted(KEYS)}")
    german = cli("search", "Wasserkocher", "--base-url", url, "--store", store, "--filter", '{"locale": "de"}')
    if [hit["key"] for hit in german] != ["A2/de"]:
        raise CheckFailed(f"search with a filter on locale 'de' found {[hit['key'] for hit in german]}")
    return store


def check_langchain(url: str) -> int:
    from langchain_lfm import LFMEmbeddings

    embeddings = LFMEmbeddings(base_url=url)
    query, document = embeddings.embed_query("garden hose"), embeddings.embed_documents(["garden hose"])[0]
    if len(query) != len(document) or query == document:
        raise CheckFailed(
            "LFMEmbeddings over the server: the query and document sides are not two vectors of one width"
        )
    return len(query)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--server-python", type=Path, required=True, help="a venv's python with lfm-retrieval[torch,serve]"
    )
    args = parser.parse_args()
    server = None
    with tempfile.TemporaryDirectory(prefix="torch-free-") as tmp:
        folder = Path(tmp)
        try:
            check_install()
            check_missing_runtime_message()
            server, url = start_server(args.server_python, folder / "dense", folder / "serve.log")
            store = check_catalog_job(url, folder)
            width = check_langchain(url)
        except CheckFailed as exc:
            print(f"torch-free install: {exc}")
            return 1
        finally:
            if server is not None:
                server.terminate()
                server.wait(timeout=30)
    print(
        f"torch-free install: no model library; DenseEncoder without torch names lfm-retrieval[torch]; "
        f"{len(CATALOG)} records indexed into {store.split('://')[0]}:// and searched over lfm-retrieval serve; "
        f"LangChain embeddings {width}-d"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

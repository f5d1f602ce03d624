"""A catalog job killed with SIGKILL at any point, then run again, leaves exactly the catalog:
every record once, with the right vector, and nothing that was written is encoded again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pytest

from lfm_retrieval import DenseEncoder
from lfm_retrieval.catalog import fingerprint
from lfm_retrieval.stores import open_store

# the job's kill-and-resume on store clients both stacks pin alike (tests/conftest.py)
pytestmark = pytest.mark.one_stack
CHILD = Path(__file__).parent.parent / "catalog_child.py"
N = 60


def _catalog(path: Path) -> list[dict]:
    rows = [
        {"sku": f"SKU-{i:03d}", "locale": "en", "title": f"Item {i}", "description": "word " * (i % 9 + 1), "price": i}
        for i in range(N)
    ]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return rows


def _run(model: Path, uri: str, catalog: Path, kill_at: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(CHILD), str(model), uri, str(catalog), kill_at],
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(params=["qdrant-edge", "qdrant-local", "pgvector"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store that outlives the process (embedded Qdrant, PostgreSQL), on a collection of the test's own."""
    name = f"kill_{request.node.callspec.id.replace('-', '_').replace(':', '_')}"
    if request.param == "qdrant-edge":
        pytest.importorskip("qdrant_edge")
        return f"qdrant+edge://{tmp_path / 'qdrant-edge'}/{name}"
    if request.param == "qdrant-local":
        pytest.importorskip("lfm_retrieval_qdrant")
        return f"qdrant+local://{tmp_path / 'qdrant'}/{name}"
    pytest.importorskip("lfm_retrieval_pgvector")
    parts = urlsplit(request.getfixturevalue("postgres_dsn"))
    return urlunsplit(parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), "table": name})))


@pytest.mark.parametrize("kill_at", ["encode:3", "between:2", "write:4"])
def test_a_killed_job_resumes_without_loss_duplicates_or_re_encoding(uri, dense_path, tmp_path, kill_at):
    rows = _catalog(tmp_path / "catalog.jsonl")

    killed = _run(dense_path, uri, tmp_path / "catalog.jsonl", kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    probe = open_store(uri)
    encoded_before = probe.count()
    probe.close()
    # The writer thread may still be writing batch 2 while batch 3 is encoded (overlap), and a
    # store that persists point by point (qdrant-local) keeps the whole points written so far.
    expected = {"encode:3": range(10, 21), "between:2": (20,), "write:4": (35,)}[kill_at]
    assert encoded_before in expected
    resumed = _run(dense_path, uri, tmp_path / "catalog.jsonl", "none")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    counts = dict(item.split("=") for item in resumed.stdout.split())
    assert int(counts["unchanged"]) == encoded_before, "what was written before the kill is not encoded again"
    assert int(counts["encoded"]) == N - encoded_before

    store = open_store(uri)
    encoder = DenseEncoder(str(dense_path), device="cpu")
    texts = {f"{r['sku']}/en": f"{r['title']}. {r['description']}" for r in rows}
    assert store.count() == N
    stored = store.fingerprints()
    assert stored == {
        key: fingerprint(encoder, text, {"sku": key[:7], "price": int(key[4:7])}) for key, text in texts.items()
    }
    for key in ("SKU-000/en", "SKU-031/en", "SKU-059/en"):
        vector = encoder.encode_documents([texts[key]])[0]
        hit = store.search(vector, k=1)[0]
        assert hit.key == key and hit.score == pytest.approx(1.0, abs=1e-4)
    assert np.isclose(store.search(vector, k=1)[0].score, 1.0, atol=1e-4)
    store.close()

"""A catalog job killed with SIGKILL at any point, then run again, leaves exactly the catalog:
every record once, with the right vector, and nothing that was written is encoded again."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfm_retrieval import DenseEncoder
from lfm_retrieval.catalog import fingerprint

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


@pytest.fixture
def durable_kind(kind):
    if kind not in ("qdrant-local", "pgvector"):
        pytest.skip("the kill test needs a store that outlives the process (embedded Qdrant, PostgreSQL)")
    return kind


@pytest.mark.parametrize("kill_at", ["encode:3", "between:2", "write:4"])
def test_a_killed_job_resumes_without_loss_duplicates_or_re_encoding(
    durable_kind, make_store, dense_path, tmp_path, kill_at
):
    rows = _catalog(tmp_path / "catalog.jsonl")
    store = make_store()
    uri = store.uri
    store.close()

    killed = _run(dense_path, uri, tmp_path / "catalog.jsonl", kill_at)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    resumed = _run(dense_path, uri, tmp_path / "catalog.jsonl", "none")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    counts = dict(item.split("=") for item in resumed.stdout.split())
    encoded_before = {"encode:3": 20, "between:2": 20, "write:4": 35}[kill_at]
    assert int(counts["unchanged"]) == encoded_before, "what was written before the kill is not encoded again"
    assert int(counts["encoded"]) == N - encoded_before

    store = make_store()
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

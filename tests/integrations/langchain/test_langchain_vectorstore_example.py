"""examples/langchain_vectorstore.py runs as written, offline, given local model folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "langchain_vectorstore.py"


def test_example_indexes_and_searches_hybrid(minilm_path: Path, minilm_colbert_path: Path, tmp_path: Path) -> None:
    pytest.importorskip("qdrant_edge")
    command = [
        *(sys.executable, str(EXAMPLE), "--model", str(minilm_path), "--colbert", str(minilm_colbert_path)),
        *("--limit", "40", "--index", str(tmp_path / "index"), "-q", "noise cancelling headphones for flights"),
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    out = result.stdout
    assert "indexing 40 catalog records into qdrant+edge://" in out
    assert "the collection holds 40 records" in out  # add_documents of the same ids updated, not duplicated
    lines = out.splitlines()
    first = lines[lines.index("  hybrid (dense prefetch, MaxSim order):") + 1]
    assert first.lstrip().startswith("1.") and ("SKU-10001/en" in first or "SKU-10002/en" in first)
    cheap = lines[lines.index("  English records at most 100:") + 1 :][:3]
    assert all("/en " in line and float(line.split()[2]) <= 100 for line in cheap)

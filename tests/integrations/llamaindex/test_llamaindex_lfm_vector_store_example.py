"""examples/llamaindex_vectorstore.py runs as written, offline, with local model folders, and reopens its store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.one_stack  # both stacks pin the same store clients and llama-index-core (tests/conftest.py)
EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "llamaindex_vectorstore.py"


def test_example_indexes_then_reopens(dense_path: Path, colbert_path: Path, tmp_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(EXAMPLE), "--model", str(dense_path), "--colbert", str(colbert_path)]
    command += ["--path", str(tmp_path), "--limit", "12", "--query", "noise cancelling headphones"]
    for run in range(2):  # the second run finds the collections and reopens them with from_vector_store
        done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
        assert done.returncode == 0, done.stderr[-3000:]
        out = done.stdout
        assert f"12 records in qdrant+edge://{tmp_path}/products (dense" in out, (run, out)
        assert f"12 records in qdrant+edge://{tmp_path}/products-hybrid (hybrid" in out, (run, out)
        for section in ("dense:", "dense, price <= 50:", "hybrid:"):  # (the filter may leave none of 12)
            assert out.count(f"  {section}\n") == 1, section
        result_lines = [line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
        assert 6 <= len(result_lines) <= 9 and all("SKU-" in line for line in result_lines)
        if run == 0:
            first = out
    assert out == first  # the same results from the reopened store

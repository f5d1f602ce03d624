"""examples/llamaindex_retriever.py runs as written, offline, with local model folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "llamaindex_retriever.py"


def test_example_runs_with_local_models(dense_path: Path, colbert_path: Path) -> None:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    command = [sys.executable, str(EXAMPLE), "--model", str(dense_path), "--colbert", str(colbert_path)]
    command += ["--limit", "12", "--query", "noise cancelling headphones", "--query", "Kaffeemühle manuell"]
    done = subprocess.run(command, capture_output=True, text=True, timeout=300, env=env, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "indexed 12 records" in out and "wrote 12 records to memory://llamaindex-example" in out
    assert out.count("query: ") == 2
    for section in ("VectorStoreIndex (cosine):", "LFMColBERTRerank (MaxSim):", "LFMRetriever on memory://"):
        assert out.count(section) == 2, section
    result_lines = [line for line in out.splitlines() if line.strip()[:2] in ("1.", "2.", "3.")]
    assert len(result_lines) == 2 * 3 * 3  # 2 queries x 3 sections x top 3
    assert all("SKU-" in line for line in result_lines)

"""examples/langchain_rag.py runs as written, offline, given local model folders."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "langchain_rag.py"


def test_example_runs_and_shows_results(minilm_path: Path, minilm_colbert_path: Path) -> None:
    command = [
        sys.executable,
        str(EXAMPLE),
        "--model",
        str(minilm_path),
        "--colbert",
        str(minilm_colbert_path),
        "--limit",
        "12",
        "--candidates",
        "5",
        "-q",
        "noise cancelling headphones for flights",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    lines = result.stdout.splitlines()
    assert "indexing 12 products into memory://rag-products" in result.stdout
    first = lines[lines.index("Q: noise cancelling headphones for flights") + 1]
    assert first.lstrip().startswith("1.") and ("SKU-10001/en" in first or "SKU-10002/en" in first)
    assert "[1] Aurelo Quiet One Wireless Noise-Cancelling Headphones" in result.stdout  # the prompt's context
    assert "[3] " in result.stdout and "[4] " not in result.stdout  # --top 3 products in the prompt
    assert "human: noise cancelling headphones for flights" in result.stdout

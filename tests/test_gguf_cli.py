"""``lfm-retrieval gguf`` on the tiny dense and ColBERT checkpoints, and index/search/eval with
``--model x.gguf`` against the torch runtime on the same weights."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

pytest.importorskip("llama_cpp", reason="the gguf command needs lfm-retrieval[gguf] (llama-cpp-python)")

from lfm_retrieval import ColBERTEncoder
from lfm_retrieval.cli import app
from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QRELS, SAMPLE_QUERIES
from lfm_retrieval.evaluation import load_qrels
from lfm_retrieval.testing.checkpoints import build_dense_checkpoint
from sample_texts import MIXED

runner = CliRunner()


@pytest.fixture(scope="module")
def converted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, str]:
    """The tiny dense checkpoint, its f32 GGUF written by the command (the module's only conversion), and
    the command's output."""
    folder = tmp_path_factory.mktemp("gguf-cli")
    checkpoint = build_dense_checkpoint(folder / "dense")
    out = folder / "dense-f32.gguf"
    result = runner.invoke(app, ["gguf", str(checkpoint), str(out), "--type", "f32"])
    assert result.exit_code == 0, result.output
    return checkpoint, out, result.output


def test_gguf_writes_the_file_and_reports_the_checked_agreement(converted) -> None:
    _, out, output = converted
    assert out.is_file() and out.read_bytes()[:4] == b"GGUF"
    assert f"wrote {out} (f32," in output and "same tokens as the checkpoint" in output
    least = float(output.split("float32 torch vectors ")[1].split()[0])
    assert 0.9999 <= least <= 1.0 + 1e-6


def test_gguf_errors_are_one_clear_line(converted, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    checkpoint, _, _ = converted
    bad_type = runner.invoke(app, ["gguf", str(checkpoint), str(tmp_path / "x.gguf"), "--type", "q3_x"])
    assert bad_type.exit_code == 2 and "q3_x" in bad_type.output and "q4_k_m" in bad_type.output
    missing = runner.invoke(app, ["gguf", str(tmp_path / "nope"), str(tmp_path / "x.gguf"), "--type", "f32"])
    assert missing.exit_code == 2 and "nope" in missing.output and "no config.json" in missing.output
    assert not (tmp_path / "x.gguf").exists()

    real_version = importlib.metadata.version

    def without_llama_cpp(name: str) -> str:
        if name == "llama-cpp-python":
            raise importlib.metadata.PackageNotFoundError(name)
        return real_version(name)

    monkeypatch.setattr(importlib.metadata, "version", without_llama_cpp)
    absent = runner.invoke(app, ["gguf", str(checkpoint), str(tmp_path / "x.gguf"), "--type", "f32"])
    assert absent.exit_code == 2 and "lfm-retrieval[gguf]" in absent.output
    for result in (bad_type, missing, absent):
        assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def _top10(store: str, model: Path, query: str) -> list[str]:
    found = runner.invoke(app, ["search", query, "--store", store, "--model", str(model), "-k", "10", "--json"])
    assert found.exit_code == 0, found.output
    return [hit["key"] for hit in json.loads(found.stdout)]


def test_index_and_search_with_a_gguf_equal_the_torch_runtime(converted, tmp_path: Path) -> None:
    checkpoint, gguf, _ = converted
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines(True)[:80]), "utf-8")
    stores = {gguf: f"qdrant+edge://{tmp_path}/gguf/products", checkpoint: "memory://gguf-cli-torch"}
    for model, store in stores.items():
        indexed = runner.invoke(app, ["index", str(catalog), "--store", store, "--model", str(model), "--json"])
        assert indexed.exit_code == 0, indexed.output
        summary = json.loads(indexed.stdout[indexed.stdout.index("{") :])
        assert (summary["read"], summary["written"], summary["failed"]) == (80, 80, 0)
    queries = [json.loads(line)["text"] for line in Path(SAMPLE_QUERIES).read_text(encoding="utf-8").splitlines()[:8]]
    for query in queries:
        ours = _top10(stores[gguf], gguf, query)
        assert len(ours) == 10 and ours == _top10(stores[checkpoint], checkpoint, query), query


def test_gguf_converts_the_colbert_checkpoint_and_reports_its_document_tokens(colbert_path, tmp_path: Path) -> None:
    out = tmp_path / "colbert-f16.gguf"
    result = runner.invoke(app, ["gguf", str(colbert_path), str(out), "--type", "f16"])
    assert result.exit_code == 0, result.output
    assert f"wrote {out} (f16," in result.output
    least = float(result.output.split("least per-token cosine of documents to its float32 torch token vectors ")[1])
    assert 0.999 <= least <= 1.0 + 1e-6
    ours = ColBERTEncoder(str(out)).encode_documents(MIXED)
    theirs = ColBERTEncoder(str(colbert_path), quantize=None).encode_documents(MIXED)
    for got, want in zip(ours, theirs, strict=True):
        assert got.shape == want.shape and np.sum(got * want, axis=1).min() >= 0.999


def judged_sample(folder: Path, queries: int = 4, others: int = 16) -> tuple[Path, Path]:
    """The sample's first ``queries`` queries and a catalog of their judged records plus ``others`` more
    (llama.cpp's tiny-model calls dominate a test's time: fewer texts, fewer seconds)."""
    lines = Path(SAMPLE_QUERIES).read_text(encoding="utf-8").splitlines(True)[:queries]
    qrels = load_qrels(SAMPLE_QRELS)
    judged = {key for line in lines for key in qrels[json.loads(line)["id"]]}
    records = Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines(True)
    is_judged = [f"{json.loads(line)['sku']}/{json.loads(line)['locale']}" in judged for line in records]
    kept = [line for line, hit in zip(records, is_judged, strict=True) if hit]
    kept += [line for line, hit in zip(records, is_judged, strict=True) if not hit][:others]
    (folder / "queries.jsonl").write_text("".join(lines), "utf-8")
    (folder / "catalog.jsonl").write_text("".join(kept), "utf-8")
    return folder / "queries.jsonl", folder / "catalog.jsonl"


def test_eval_with_a_gguf_scores_as_the_torch_runtime(gguf_files: dict[str, Path], dense_path: Path, tmp_path) -> None:
    queries, catalog = judged_sample(tmp_path)
    scores = {}
    for name, model in (("gguf", gguf_files["dense"]), ("torch", dense_path)):
        store, where = f"memory://gguf-eval-{name}", ["--model", str(model)]
        indexed = runner.invoke(app, ["index", str(catalog), "--text", "{title}", "--store", store, *where])
        assert indexed.exit_code == 0, indexed.output
        judged = ["--queries", str(queries), "--qrels", str(SAMPLE_QRELS)]
        scored = runner.invoke(app, ["eval", *judged, "--store", store, *where])
        assert scored.exit_code == 0, scored.output
        scores[name] = json.loads(scored.stdout)
    assert scores["gguf"]["queries"] == scores["torch"]["queries"] == 4
    assert scores["torch"]["ndcg@10"] > 0  # something is found: equal scores are not two zeros
    for metric in ("ndcg@10", "recall@10"):
        assert abs(scores["gguf"][metric] - scores["torch"][metric]) <= 0.01, scores

"""``lfm-retrieval gguf`` on the tiny dense checkpoint, and index/search with ``--model x.gguf`` against
the torch runtime on the same weights."""

from __future__ import annotations

import importlib.metadata
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

pytest.importorskip("llama_cpp", reason="the gguf command needs lfm-retrieval[gguf] (llama-cpp-python)")

from lfm_retrieval.cli import app
from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QUERIES
from lfm_retrieval.testing.checkpoints import build_dense_checkpoint

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

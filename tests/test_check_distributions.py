"""scripts/check_distributions.py: which distributions must install and import without torch, and that
its checks fail, naming the library, where one comes in (run in this venv, which has torch)."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def check():
    spec = importlib.util.spec_from_file_location("check_distributions", ROOT / "scripts" / "check_distributions.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses resolve annotations through sys.modules
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_only_plaid_may_bring_torch(check):
    dists = {d.label: d for d in check.discover()}
    assert not dists["lfm-retrieval-plaid"].torch_free
    for label in ("lfm-retrieval", "lfm-retrieval-pgvector", "lfm-retrieval-qdrant", "langchain-lfm"):
        assert dists[label].torch_free, label
        assert not check.requires_model_library(dists[label].requires), label


def test_requires_model_library(check):
    assert check.requires_model_library(["numpy", "lfm-retrieval[torch,serve]"])
    assert check.requires_model_library(["Sentence_Transformers>=5"])
    assert not check.requires_model_library(["lfm-retrieval[gguf]", "tokenizers>=0.22"])


def test_test_requirements_install_our_distributions_editable(check):
    local = {"lfm-retrieval": ROOT / "core"}
    args = check.test_requirements(["pytest", "lfm-retrieval[torch]"], local)
    assert args[:2] == ["-e", f"{ROOT / 'core'}[torch]"]
    assert args[2].startswith("pytest==")


def test_model_libraries_in_names_what_came_and_why(check):
    found = check.model_libraries_in(Path(sys.executable))  # the stack venv: torch is installed
    assert "torch (required by" in found
    assert "sentence-transformers" in found


def run_import_check(check, modules: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-c", check.IMPORT_CHECK, "lfm-retrieval", modules, "1"]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300)


def test_import_check_passes_a_torch_free_import(check):
    done = run_import_check(check, "lfm_retrieval,lfm_retrieval.stores")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "model libraries: none" in done.stdout


def test_import_check_fails_naming_the_library_imported(check):
    done = run_import_check(check, "lfm_retrieval.testing")  # builds checkpoints with torch
    assert done.returncode == 1
    assert "imported" in done.stdout and "torch" in done.stdout.splitlines()[-1]

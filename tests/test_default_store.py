"""The default store comes from the adapters (the ``lfm_retrieval.default_store`` entry points): the core
names no scheme, and says what to install when no adapter offers one."""

from __future__ import annotations

import importlib.metadata

import pytest

from lfm_retrieval.stores import registry
from lfm_retrieval.stores.registry import DEFAULT_STORE_GROUP, default_store_uri, open_store


def test_the_qdrant_adapter_offers_its_embedded_store_as_the_default(tmp_path, monkeypatch) -> None:
    pytest.importorskip("lfm_retrieval_qdrant")
    assert default_store_uri(str(tmp_path), "c") == f"qdrant+edge://{tmp_path}/c"
    pytest.importorskip("qdrant_edge")
    monkeypatch.chdir(tmp_path)
    with open_store() as store:  # no URI: the default store in ./lfm-index/products
        assert store.uri == "qdrant+edge://./lfm-index/products"


def test_without_an_adapter_that_offers_one_the_default_is_a_lookup_error_naming_what_to_install(
    monkeypatch,
) -> None:
    def entry_points(*, group: str):
        return [] if group == DEFAULT_STORE_GROUP else importlib.metadata.entry_points(group=group)

    monkeypatch.setattr(registry, "entry_points", entry_points)
    with pytest.raises(LookupError, match="lfm-retrieval-qdrant"):
        open_store()
    assert open_store("memory://named").uri == "memory://named"  # a named store needs no default

"""Adding a store as CONTRIBUTING.md's "Adding a store" says, for a throwaway store, with no change to
the core: 1. the package (a store class of the protocol's dense kind; installed as a distribution:
its module and a dist-info), 2. the opener declared with ``serves`` and its ``lfm_retrieval.stores``
entry point, the store saying it is ``shared``, 3. one test class of the kit's suite with its one
``make_store`` fixture. The core finds it by its URI scheme, and the Ray engine's write path follows
what the store says of itself."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator

import pytest

from lfm_retrieval.catalog.engines.ray import workers_can_write
from lfm_retrieval.stores import available_schemes, open_store
from lfm_retrieval.testing.stores import DenseStoreSuite, MakeStore, unique_name

# The throwaway adapter: the memory store under another scheme, saying it is a server's collection.
ADAPTER = """
from lfm_retrieval.stores import serves
from lfm_retrieval.stores.memory import MemoryStore


class ThrowawayStore(MemoryStore):
    shared = True  # what a server store says: many processes may open it


@serves("dense")
def from_uri(uri, *, kind="dense", **options):
    return ThrowawayStore("throwaway-" + uri.split("://", 1)[1])
"""


@pytest.fixture(scope="module")
def throwaway_installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """The adapter installed as a distribution: its module and a dist-info with the entry point."""
    site = tmp_path_factory.mktemp("site")
    (site / "throwaway_store.py").write_text(ADAPTER)
    info = site / "throwaway_store-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: throwaway-store\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[lfm_retrieval.stores]\nthrowaway = throwaway_store:from_uri\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    yield
    sys.path.remove(str(site))
    sys.modules.pop("throwaway_store", None)


def test_the_core_finds_the_new_store_by_its_scheme_and_the_kinds_it_declares(throwaway_installed) -> None:
    assert "throwaway" in available_schemes()
    store = open_store("throwaway://products")
    assert type(store).__name__ == "ThrowawayStore"
    with pytest.raises(ValueError, match="serves dense collections, not multivector"):
        open_store("throwaway://products", kind="multivector")


def test_the_ray_engine_lets_its_workers_write_where_every_store_says_it_is_shared(throwaway_installed) -> None:
    shared, single_process = open_store("throwaway://products"), open_store("memory://products")
    assert workers_can_write([shared])
    assert not workers_can_write([shared, single_process])  # one store only the driver may open: the driver writes


class TestThrowawayStoreDense(DenseStoreSuite):
    @pytest.fixture
    def make_store(self, throwaway_installed) -> MakeStore:
        names: dict[str, str] = {}

        def make(name: str = "c"):
            names.setdefault(name, unique_name(name))
            return open_store(f"throwaway://{names[name]}")

        return make

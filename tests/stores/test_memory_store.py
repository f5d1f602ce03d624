"""The core's exact in-memory stores against the conformance suites (they are also the suites' reference)."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from lfm_retrieval.stores import Store, open_store
from lfm_retrieval.testing.stores import DenseStoreSuite, HybridStoreSuite, MultiVectorStoreSuite, unique_name


class MemoryFixture:
    kind: str

    @pytest.fixture
    def make_store(self) -> Callable[..., Store]:
        names: dict[str, str] = {}

        def make(name: str = "c") -> Store:
            names.setdefault(name, unique_name(f"memory_{name}"))
            return open_store(f"memory://{names[name]}", kind=self.kind)

        return make


class TestMemoryDense(MemoryFixture, DenseStoreSuite):
    pass


class TestMemoryMultiVector(MemoryFixture, MultiVectorStoreSuite):
    pass


class TestMemoryHybrid(MemoryFixture, HybridStoreSuite):
    pass

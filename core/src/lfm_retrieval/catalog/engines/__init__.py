"""Where a catalog job runs: this process (:class:`LocalEngine`) or a Ray cluster (:class:`RayEngine`).

``RayEngine`` is imported lazily: Ray is an optional extra (``pip install lfm-retrieval[ray]``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lfm_retrieval.catalog.engines.local import LocalEngine

if TYPE_CHECKING:
    from lfm_retrieval.catalog.engines.ray import RayEngine

__all__ = ["LocalEngine", "RayEngine"]


def __getattr__(name: str) -> Any:
    if name == "RayEngine":
        from lfm_retrieval.catalog.engines.ray import RayEngine

        return RayEngine
    raise AttributeError(name)

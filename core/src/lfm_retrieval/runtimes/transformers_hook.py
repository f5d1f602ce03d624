"""Register the project's bidirectional LFM2 with transformers as soon as transformers is imported.

``import lfm_retrieval`` imports no model library, yet loading an LFM2.5 checkpoint through
transformers, sentence-transformers or PyLate without the registration would silently build the
causal model. So importing the package leaves a one-shot import hook: when (and if) the process
imports ``transformers``, :mod:`lfm_retrieval.models` is imported right after it and registers.
Written by hand because Python has no post-import hook of its own (PEP 369 was withdrawn).
"""

from __future__ import annotations

import importlib.abc
import importlib.util
import logging
import sys
from typing import Any

logger = logging.getLogger("lfm_retrieval")


class _RegisterAfterTransformers(importlib.abc.MetaPathFinder):
    """Finds ``transformers`` with the other finders, and registers once its module has run."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name != "transformers":
            return None
        remove_hook()  # one shot; also keeps find_spec below from coming back here
        spec = importlib.util.find_spec(name)
        if spec is None or spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run_module = spec.loader.exec_module

        def exec_module(module: Any) -> None:
            run_module(module)
            _register()

        spec.loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


_hook = _RegisterAfterTransformers()


def register_with_transformers() -> None:
    """Register now if transformers is already imported, else as soon as it is."""
    if "transformers" in sys.modules:
        _register()
    elif _hook not in sys.meta_path:
        sys.meta_path.insert(0, _hook)


def remove_hook() -> None:
    """Take the hook out of ``sys.meta_path`` (it removes itself when it fires)."""
    if _hook in sys.meta_path:
        sys.meta_path.remove(_hook)


def _register() -> None:
    try:
        import lfm_retrieval.models  # noqa: F401  (registers on import)
    except Exception as exc:  # never break the caller's own import of transformers
        logger.warning("could not register the bidirectional LFM2 with transformers: %s: %s", type(exc).__name__, exc)

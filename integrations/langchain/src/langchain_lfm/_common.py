"""Input checks and encoder construction shared by the LangChain classes."""

from __future__ import annotations

import inspect
from typing import Any

from lfm_retrieval.encoders import check_model_path

# Arguments the classes set from their own fields; encoder_kwargs may not repeat them.
_OWN_ARGUMENTS = ("model", "device", "batch_size", "normalize")


def check_model_and_kwargs(model: str, encoder_class: type, encoder_kwargs: dict[str, Any]) -> None:
    """Fail at construction, not at first use: a local path must be a sentence-transformers /
    PyLate model folder (ModelLoadError naming it), and ``encoder_kwargs`` must be arguments
    of ``encoder_class``. Hub ids are only resolved when the model is first loaded."""
    parameters = inspect.signature(encoder_class.__init__).parameters
    for name in encoder_kwargs:
        if name in _OWN_ARGUMENTS:
            raise ValueError(f"encoder_kwargs may not set {name!r}; use the {name}= field")
        if name not in parameters:
            allowed = ", ".join(p for p in parameters if p not in ("self", *_OWN_ARGUMENTS))
            raise ValueError(f"encoder_kwargs: {encoder_class.__name__} has no argument {name!r} (it takes {allowed})")
    check_model_path(model)

"""What runs a model for one encoder: the runtime protocol shared by torch, llama.cpp and remote servers.

An encoder (:class:`~lfm_retrieval.encoders.DenseEncoder`, :class:`~lfm_retrieval.encoders.ColBERTEncoder`)
keeps validation, length-sorted batching, streaming, micro-batching and stats; its runtime turns one
batch of RAW texts into vectors and applies the side's prompt or prefix exactly once.
"""

from __future__ import annotations

from enum import Enum
from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np


class Side(str, Enum):
    """Which side of retrieval a text is on; each side has its own prompt or prefix."""

    QUERY = "query"
    DOCUMENT = "document"


@runtime_checkable
class Runtime(Protocol):
    """Runs the model for one encoder."""

    model_name: str  # as given by the user (path, Hub id, or server model name)
    max_length: int  # token limit of one text, prompt/prefix included

    def token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        """Each text's length in tokens as the model will see it (prompt/prefix applied, truncated),
        and how many were cut."""
        ...

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        """Vectors of RAW texts (no prompt/prefix): the runtime applies the side's prompt or prefix once."""
        ...


@runtime_checkable
class DenseRuntime(Runtime, Protocol):
    """``encode_batch`` gives one L2-normalised float32 vector per text."""

    dimension: int


@runtime_checkable
class MultiVectorRuntime(Runtime, Protocol):
    """``encode_batch`` gives one (tokens, dimension) float32 array per text, each row L2-normalised, with
    PyLate's ColBERT rules: ``[Q] ``/``[D] `` prefix after BOS, queries expanded to ``query_length``,
    documents without punctuation-skiplist tokens and padding."""

    dimension: int
    query_length: int


# What an encoder asks of a runtime beyond the protocol, with the value it assumes when the runtime
# does not say: batch defaults, whether pads may share a batch, whether calls go to the model thread.
RUNTIME_DEFAULTS = {
    "batch_size": 32,
    "max_batch_tokens": 1024,
    "max_padding": 0.0,
    "uses_model_thread": True,  # in-process runtimes with an OpenMP pool (torch, ggml): see model_thread.py
    "precision": "float32",
}


def runtime_setting(runtime: Runtime, name: str):
    """``runtime``'s own ``name`` setting, or the default of :data:`RUNTIME_DEFAULTS`."""
    return getattr(runtime, name, RUNTIME_DEFAULTS[name])

"""The runtimes an encoder runs its model on: torch (in-process), llama.cpp (GGUF, in-process) and
remote servers (``lfm-retrieval serve`` or any OpenAI-compatible ``/v1/embeddings``).

Importing this package loads no model library; each runtime imports its own when it is built.
"""

from lfm_retrieval.runtimes.base import DenseRuntime, MultiVectorRuntime, Runtime
from lfm_retrieval.runtimes.choose import dense_runtime, multivector_runtime, runtime_kind

__all__ = ["DenseRuntime", "MultiVectorRuntime", "Runtime", "dense_runtime", "multivector_runtime", "runtime_kind"]

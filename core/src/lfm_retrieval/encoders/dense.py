"""Dense (one vector per text) encoder over a runtime: torch (sentence-transformers), llama.cpp or a server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from lfm_retrieval.encoders.base import Encoder, stack
from lfm_retrieval.encoders.spec import EncoderSpec
from lfm_retrieval.runtimes.base import Side
from lfm_retrieval.runtimes.choose import dense_runtime

if TYPE_CHECKING:
    from lfm_retrieval.runtimes.base import DenseRuntime
    from lfm_retrieval.runtimes.precision import Quantize


class DenseEncoder(Encoder[np.ndarray]):
    """One L2-normalised float32 vector per text, with the model's query/document prompts.

    Defaults to LFM2.5-Embedding-350M; any sentence-transformers model (a folder or a Hub id)
    works. The runtime follows from the arguments (:func:`lfm_retrieval.runtimes.dense_runtime`):
    a ``.gguf`` file runs in llama.cpp, ``base_url=`` on a server (``lfm-retrieval serve`` or any
    OpenAI-compatible ``/v1/embeddings``, the client adding the prompts), anything else in torch.
    A model that declares no ``query``/``document`` prompts is encoded without prompts (one
    warning); an LFM2.5 model without them is an error.

    >>> encoder = DenseEncoder("path/to/LFM2.5-Embedding-350M")  # doctest: +SKIP
    >>> encoder.encode_queries(["waterproof trail shoes"]).shape  # doctest: +SKIP
    (1, 1024)
    >>> remote = DenseEncoder("LiquidAI/LFM2.5-Embedding-350M", base_url="http://127.0.0.1:8000")  # doctest: +SKIP
    """

    runtime_attributes = ("model", "query_model", "query_agreement", "query_seconds", "prompts", "normalize")

    def __init__(
        self,
        model: str | None = None,
        *,
        runtime: str | DenseRuntime = "auto",
        device: str | None = None,
        dtype: Any = None,
        quantize: Quantize = "auto",
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        chunk_size: int = 1024,
        normalize: bool = True,
        max_padding: float | None = None,
        base_url: str | None = None,
        prompts: dict[str, str] | str | None = None,
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        #: what this encoder is, serialisable (None over a runtime object): rebuilds it elsewhere (Ray actors)
        self.spec: EncoderSpec | None = None
        if isinstance(runtime, str):
            self.spec = EncoderSpec(
                "dense",
                model,
                runtime,
                device=device,
                dtype=dtype,
                quantize=quantize,
                normalize=normalize,
                batch_size=batch_size,
                max_batch_tokens=max_batch_tokens,
                max_padding=max_padding,
                base_url=base_url,
                prompts=prompts,
                api_key=api_key,
                headers=headers,
                timeout=timeout,
                chunk_size=chunk_size,
            )
            chosen = dense_runtime(self.spec.model, **self.spec.runtime_kwargs())
        else:
            chosen = runtime
        super().__init__(chosen, batch_size, max_batch_tokens, chunk_size, max_padding)

    def encode_queries(self, texts: Iterable[str]) -> np.ndarray:
        """Query-side vectors, shape (n, dimension); concurrent callers share model calls."""
        return stack(self._coalesced_queries(texts), self.dimension)

    async def aencode_queries(self, texts: Iterable[str]) -> np.ndarray:
        """:meth:`encode_queries` for async code: awaits a shared model call, no thread per call."""
        return stack(await self._acoalesced_queries(texts), self.dimension)

    def encode_documents(self, texts: Iterable[str]) -> np.ndarray:
        """Document-side vectors, shape (n, dimension)."""
        return stack(list(self.stream(texts, Side.DOCUMENT)), self.dimension)

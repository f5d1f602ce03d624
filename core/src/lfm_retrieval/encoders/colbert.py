"""Late-interaction (ColBERT) encoder over a runtime: torch (PyLate or sentence-transformers'
MultiVectorEncoder), llama.cpp or a server."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import numpy as np

from lfm_retrieval.encoders.base import Encoder
from lfm_retrieval.encoders.spec import EncoderSpec
from lfm_retrieval.runtimes.base import Side
from lfm_retrieval.runtimes.choose import multivector_runtime

if TYPE_CHECKING:
    from lfm_retrieval.runtimes.base import MultiVectorRuntime
    from lfm_retrieval.runtimes.precision import Quantize
    from lfm_retrieval.runtimes.torch_runtime import Backend


class ColBERTEncoder(Encoder[np.ndarray]):
    """One (tokens, dim) float32 array per text, each token vector L2-normalised.

    Queries get the query prefix (``[Q] ``) and are expanded to ``query_length`` (32)
    tokens; documents get the document prefix (``[D] ``) and lose skiplist
    (punctuation) tokens. Defaults to LFM2.5-ColBERT-350M; any PyLate model works.
    The runtime follows from the arguments (:func:`lfm_retrieval.runtimes.multivector_runtime`):
    a ``.gguf`` file runs in llama.cpp, ``base_url=`` on a server (``api=``: ``"serve"``
    for ``lfm-retrieval serve``, ``"llama-server"``, ``"vllm"``, or ``"auto"`` to detect it), anything
    else in torch.

    ``backend="auto"`` (torch) uses PyLate when it is installed and sentence-transformers'
    ``MultiVectorEncoder`` (sentence-transformers >= 6) otherwise; both give the same
    vectors because padded positions are inert (docs/design.md, "Why pads are zeroed").
    """

    runtime_attributes = (
        "model",
        "query_model",
        "query_agreement",
        "query_seconds",
        "backend",
        "query_length",
        "document_length",
        "query_prefix",
        "document_prefix",
    )

    def __init__(
        self,
        model: str | None = None,
        *,
        runtime: str | MultiVectorRuntime = "auto",
        backend: Backend = "auto",
        device: str | None = None,
        dtype: Any = None,
        quantize: Quantize = "auto",
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        chunk_size: int = 1024,
        max_padding: float | None = None,
        base_url: str | None = None,
        api: str = "auto",
        api_key: str | None = None,
        headers: dict[str, str] | None = None,
        timeout: float = 60.0,
    ) -> None:
        #: what this encoder is, serialisable (None over a runtime object): rebuilds it elsewhere (Ray actors)
        self.spec: EncoderSpec | None = None
        if isinstance(runtime, str):
            self.spec = EncoderSpec(
                "colbert",
                model,
                runtime,
                backend=backend,
                device=device,
                dtype=dtype,
                quantize=quantize,
                batch_size=batch_size,
                max_batch_tokens=max_batch_tokens,
                max_padding=max_padding,
                base_url=base_url,
                api=api,
                api_key=api_key,
                headers=headers,
                timeout=timeout,
                chunk_size=chunk_size,
            )
            chosen = multivector_runtime(self.spec.model, **self.spec.runtime_kwargs())
        else:
            chosen = runtime
        super().__init__(chosen, batch_size, max_batch_tokens, chunk_size, max_padding)

    def encode_queries(self, texts: Iterable[str]) -> list[np.ndarray]:
        """Query-side token vectors: one (query_length, dim) array per text; concurrent callers
        share model calls."""
        return self._coalesced_queries(texts)

    async def aencode_queries(self, texts: Iterable[str]) -> list[np.ndarray]:
        """:meth:`encode_queries` for async code: awaits a shared model call, no thread per call."""
        return await self._acoalesced_queries(texts)

    def encode_documents(self, texts: Iterable[str]) -> list[np.ndarray]:
        """Document-side token vectors: one (tokens, dim) array per text, skiplist removed."""
        return list(self.stream(texts, Side.DOCUMENT))

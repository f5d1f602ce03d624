"""Dense (one vector per text) encoder over sentence-transformers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import numpy as np
import torch

from lfm_retrieval.encoders.base import Encoder, in_float32, logger, stack, unit_rows
from lfm_retrieval.encoders.batching import Side
from lfm_retrieval.encoders.loading import (
    Quantize,
    check_backbone,
    choose_batch_size,
    choose_max_batch_tokens,
    choose_max_padding,
    embedding_dimension,
    load_device,
    load_or_explain,
    local_st_config,
    place,
    set_zero_padding,
)
from lfm_retrieval.encoders.model_thread import on_model_thread
from lfm_retrieval.errors import ModelLoadError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

LFM25_EMBEDDING = "LiquidAI/LFM2.5-Embedding-350M"


class DenseEncoder(Encoder[np.ndarray]):
    """One L2-normalised float32 vector per text, with the model's query/document prompts.

    Defaults to LFM2.5-Embedding-350M; any sentence-transformers model (a folder or a
    Hub id) works. A model that declares no ``query``/``document`` prompts is encoded
    without prompts (one warning); an LFM2.5 model without them is an error.

    >>> encoder = DenseEncoder("path/to/LFM2.5-Embedding-350M")  # doctest: +SKIP
    >>> encoder.encode_queries(["waterproof trail shoes"]).shape  # doctest: +SKIP
    (1, 1024)
    """

    @on_model_thread  # loading, calibration and every forward pass on one thread: model_thread.py
    def __init__(
        self,
        model: str = LFM25_EMBEDDING,
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        quantize: Quantize = "auto",
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        chunk_size: int = 1024,
        normalize: bool = True,
        max_padding: float | None = None,
    ) -> None:
        super().__init__(batch_size, max_batch_tokens, chunk_size)
        self.model_name = str(model)
        self.normalize = normalize  # False: the raw pooled vector (cosine ranks the same)
        device = load_device(device, dtype, quantize)
        local_st_config(self.model_name)
        # imported here: sentence-transformers adds scikit-learn and more (~2 s a process on 2 cores), which
        # processes that import the package but build no dense encoder (Ray tasks, the CLI) never need
        from sentence_transformers import SentenceTransformer

        self.model: SentenceTransformer = load_or_explain(self.model_name, SentenceTransformer, device=device)
        is_lfm25 = check_backbone(self.model, self.model_name)
        place(self.model, dtype, quantize)
        set_zero_padding(self.model, True)
        self.max_padding = choose_max_padding(self.model, max_padding)
        self.batch_size = choose_batch_size(self.model, batch_size)
        self.max_batch_tokens = choose_max_batch_tokens(self.model, max_batch_tokens)
        prompts = self.model.prompts or {}
        missing = [side.value for side in Side if not prompts.get(side.value)]
        if missing and is_lfm25:
            raise ModelLoadError(
                f"{self.model_name!r} is an LFM2.5 model but declares no {' / '.join(missing)} prompt "
                "in config_sentence_transformers.json; its vectors would be wrong without them."
            )
        if missing:
            logger.warning("%s declares no %s prompt: encoding without prompts", self.model_name, "/".join(missing))
        self.prompts = {side: prompts.get(side.value) or "" for side in Side}
        self.dimension = embedding_dimension(self.model)
        self.max_length: int = self.model.max_seq_length
        self._prepare_query_model(quantize, dtype)

    def encode_queries(self, texts: Iterable[str]) -> np.ndarray:
        """Query-side vectors, shape (n, dimension); concurrent callers share model calls."""
        return stack(self._coalesced_queries(texts), self.dimension)

    async def aencode_queries(self, texts: Iterable[str]) -> np.ndarray:
        """:meth:`encode_queries` for async code: awaits a shared model call, no thread per call."""
        return stack(await self._acoalesced_queries(texts), self.dimension)

    def encode_documents(self, texts: Iterable[str]) -> np.ndarray:
        """Document-side vectors, shape (n, dimension)."""
        return stack(list(self.stream(texts, Side.DOCUMENT)), self.dimension)

    def _token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        prompt = self.prompts[side]
        ids = self.model.tokenizer([prompt + text for text in texts], verbose=False)["input_ids"]
        full = [len(row) for row in ids]
        return [min(n, self.max_length) for n in full], sum(n > self.max_length for n in full)

    def _encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        model = self._model_for(side)
        encode = model.encode_query if side is Side.QUERY else model.encode_document
        exact = in_float32(model)
        vectors = encode(
            texts,
            batch_size=len(texts),
            normalize_embeddings=self.normalize and exact,
            convert_to_numpy=True,
            show_progress_bar=False,
        ).astype(np.float32, copy=False)
        return list(unit_rows(vectors) if self.normalize and not exact else vectors)

"""Late-interaction (ColBERT) encoder over PyLate or sentence-transformers' MultiVectorEncoder."""

from __future__ import annotations

import importlib.util
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from lfm_retrieval.encoders.base import Encoder, in_float32, unit_rows
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

LFM25_COLBERT = "LiquidAI/LFM2.5-ColBERT-350M"
Backend = Literal["auto", "pylate", "sentence-transformers"]


class ColBERTEncoder(Encoder[np.ndarray]):
    """One (tokens, dim) float32 array per text, each token vector L2-normalised.

    Queries get the query prefix (``[Q] ``) and are expanded to ``query_length`` (32)
    tokens; documents get the document prefix (``[D] ``) and lose skiplist
    (punctuation) tokens. Defaults to LFM2.5-ColBERT-350M; any PyLate model works.

    ``backend="auto"`` uses PyLate when it is installed and sentence-transformers'
    ``MultiVectorEncoder`` (sentence-transformers >= 6) otherwise; both give the same
    vectors because padded positions are inert (see ``max_padding`` in the README).
    """

    @on_model_thread  # loading, calibration and every forward pass on one thread: model_thread.py
    def __init__(
        self,
        model: str = LFM25_COLBERT,
        *,
        backend: Backend = "auto",
        device: str | None = None,
        dtype: torch.dtype | None = None,
        quantize: Quantize = "auto",
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        chunk_size: int = 1024,
        max_padding: float | None = None,
    ) -> None:
        super().__init__(batch_size, max_batch_tokens, chunk_size)
        self.model_name = str(model)
        device = load_device(device, dtype, quantize)
        st_config = local_st_config(self.model_name)
        if st_config is not None and not _is_late_interaction(Path(self.model_name).expanduser(), st_config):
            raise ModelLoadError(
                f"{self.model_name!r} is not a ColBERT (PyLate) model: it has no projection (Dense) module "
                "and no MaxSim similarity. Use DenseEncoder for single-vector models."
            )
        self.backend = _pick_backend(backend)
        if self.backend == "pylate":
            from pylate.models import ColBERT

            self.model = load_or_explain(self.model_name, ColBERT, device=device)
            self.query_length: int = self.model.query_length
            self.document_length: int = self.model.document_length
            self.document_prefix: str = self.model.document_prefix
        else:
            from sentence_transformers import MultiVectorEncoder

            self.model = load_or_explain(self.model_name, MultiVectorEncoder, device=device)
            self.query_length = self.model[0].query_expansion["length"]
            self.document_length = self.model[0].document_length
            self.document_prefix = (self.model.prompts or {}).get("document", "")
        is_lfm25 = check_backbone(self.model, self.model_name)
        if (
            is_lfm25
            and st_config is not None
            and not (st_config.get("query_prefix") and st_config.get("document_prefix"))
        ):
            raise ModelLoadError(
                f"{self.model_name!r} is an LFM2.5 model but declares no query_prefix / document_prefix "
                "in config_sentence_transformers.json; its vectors would be wrong without them."
            )
        place(self.model, dtype, quantize)
        self.max_padding = choose_max_padding(self.model, max_padding)
        self.batch_size = choose_batch_size(self.model, batch_size)
        self.max_batch_tokens = choose_max_batch_tokens(self.model, max_batch_tokens)
        self.dimension = embedding_dimension(self.model)
        self._prepare_query_model(quantize, dtype)

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

    def _token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        full = [len(ids) for ids in self.model.tokenizer(texts, verbose=False)["input_ids"]]
        # The prefix token is inserted after tokenisation, within the side's length limit.
        limit = (self.query_length if side is Side.QUERY else self.document_length) - 1
        truncated = sum(n > limit for n in full)
        if side is Side.QUERY:
            return [self.query_length] * len(texts), truncated
        return [min(n, limit) + 1 for n in full], truncated

    def _encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        # Query-expansion tokens have mask 0 but are scored: not padding, never zeroed.
        model = self._model_for(side)
        set_zero_padding(model, side is Side.DOCUMENT)
        if self.backend == "pylate":
            arrays = model.encode(texts, is_query=side is Side.QUERY, batch_size=len(texts), show_progress_bar=False)
        else:
            encode = model.encode_query if side is Side.QUERY else model.encode_document
            arrays = encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)
        arrays = [np.asarray(array, dtype=np.float32) for array in arrays]
        return arrays if in_float32(model) else [unit_rows(array) for array in arrays]


def _pick_backend(backend: Backend) -> str:
    if backend not in ("auto", "pylate", "sentence-transformers"):
        raise ValueError(f"backend must be 'auto', 'pylate' or 'sentence-transformers', not {backend!r}")
    if backend == "auto":
        backend = "pylate" if importlib.util.find_spec("pylate") else "sentence-transformers"
    if backend == "sentence-transformers":
        import sentence_transformers

        if not hasattr(sentence_transformers, "MultiVectorEncoder"):
            raise ModelLoadError(
                "ColBERT needs PyLate (pip install 'lfm-retrieval[pylate]') or sentence-transformers >= 6.0 "
                f"(MultiVectorEncoder); sentence-transformers {sentence_transformers.__version__} is installed"
            )
    return backend


def _is_late_interaction(folder: Path, st_config: dict) -> bool:
    if st_config.get("similarity_fn_name") == "MaxSim" or "query_prefix" in st_config:
        return True
    modules = json.loads((folder / "modules.json").read_text())
    return any(module.get("type", "").endswith("Dense") for module in modules)

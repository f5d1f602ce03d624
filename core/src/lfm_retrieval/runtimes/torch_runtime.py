"""The torch runtime: the model in this process through sentence-transformers (dense) or PyLate /
sentence-transformers' ``MultiVectorEncoder`` (ColBERT), with its reduced-precision query copy."""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from lfm_retrieval.errors import ModelLoadError
from lfm_retrieval.int8 import CALIBRATION_QUERIES, mean_cosine
from lfm_retrieval.runtimes.base import Side
from lfm_retrieval.runtimes.loading import (
    check_backbone,
    choose_batch_size,
    choose_max_batch_tokens,
    choose_max_padding,
    embedding_dimension,
    load_or_explain,
    local_st_config,
    set_zero_padding,
)
from lfm_retrieval.runtimes.model_ids import model_id_of
from lfm_retrieval.runtimes.precision import (
    QUERY_COPY_MIN_AGREEMENT,
    Quantize,
    fastest,
    load_device,
    place,
    precision_of,
    query_copy,
    query_copy_candidates,
    torch_dtype,
)
from lfm_retrieval.vectors import unit_rows

logger = logging.getLogger("lfm_retrieval")
Backend = Literal["auto", "pylate", "sentence-transformers"]


class TorchRuntime:
    """What both torch runtimes share: the loaded model, its device defaults and the query copy.

    Build one on the model thread (:mod:`lfm_retrieval.runtimes.model_thread`): the encoders do.
    """

    uses_model_thread = True
    model_name: str
    model: Any
    max_length: int
    dimension: int

    def __init__(self, model: str, dtype: torch.dtype | str | None) -> None:
        self.model_name = str(model)
        self.dtype = torch_dtype(dtype)
        self.query_model: Any = None  # the int8 or bfloat16 copy queries run on, when there is one
        # each query copy tried when the model loaded: its mean cosine to float32 on real queries
        self.query_agreement: dict[str, float] = {}
        # ... and, where more than one agreed, its best time on one real query (seconds)
        self.query_seconds: dict[str, float] = {}

    def _set_batching(self, batch_size: int | None, max_batch_tokens: int | None, max_padding: float | None) -> None:
        self.max_padding = choose_max_padding(self.model, max_padding)
        self.batch_size = choose_batch_size(self.model, batch_size)
        self.max_batch_tokens = choose_max_batch_tokens(self.model, max_batch_tokens)

    @property
    def precision(self) -> str:
        """What queries run in: ``"int8"``, ``"bfloat16"`` (a query copy) or the model's own."""
        return precision_of(self.query_model if self.query_model is not None else self.model)

    def model_for(self, side: Side) -> Any:
        """The model a side runs on: the query copy for queries where there is one."""
        return self.query_model if side is Side.QUERY and self.query_model is not None else self.model

    @property
    def on_cpu(self) -> bool:
        """Whether the model runs on the CPU."""
        return next(self.model.parameters()).device.type == "cpu"

    def float32_vectors(self, texts: list[str], side: Side) -> list[np.ndarray]:
        """``texts``' vectors from the model itself, not its query copy: the reference others must agree with."""
        query_model, self.query_model = self.query_model, None
        try:
            with torch.inference_mode():
                return self.encode_batch(texts, side)
        finally:
            self.query_model = query_model

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:  # pragma: no cover - abstract
        raise NotImplementedError

    def prepare_query_model(self, quantize: Quantize) -> None:
        """Give queries a reduced-precision copy of the model where :func:`query_copy_candidates`
        says so. Each candidate must agree with float32 on real queries (:data:`CALIBRATION_QUERIES`,
        mean cosine >= :data:`QUERY_COPY_MIN_AGREEMENT`): with ``"auto"`` one that does not is
        dropped, and of two that do the faster on one real query is kept (measured here, on this
        model and CPU); ``"queries"`` keeps its int8 copy, with a warning if it disagrees."""
        candidates = query_copy_candidates(self.model, quantize, self.dtype)
        if not candidates:
            return
        texts = list(CALIBRATION_QUERIES)
        copies = {}
        name = model_id_of(self.model_name)
        with torch.inference_mode():
            reference = self.encode_batch(texts, Side.QUERY)
            for precision in candidates:
                copies[precision] = self.query_model = query_copy(self.model, precision)
                self.query_agreement[precision] = mean_cosine(reference, self.encode_batch(texts, Side.QUERY))
            self.query_model = None
            agreeing = {p: m for p, m in copies.items() if self.query_agreement[p] >= QUERY_COPY_MIN_AGREEMENT}
            if quantize == "queries":
                chosen: str | None = "int8"
            elif len(agreeing) > 1:
                chosen, self.query_seconds = fastest({p: self._query_timer(m, texts[0]) for p, m in agreeing.items()})
            else:
                chosen = next(iter(agreeing), None)
        agreement = ", ".join(f"{p} {cosine:.4f}" for p, cosine in self.query_agreement.items())
        if chosen is None:
            logger.info("%s: float32 queries: mean cosine to float32 only %s", name, agreement)
            return
        self.query_model = copies[chosen]
        if chosen not in agreeing:
            cosine = self.query_agreement[chosen]
            logger.warning("%s: %s queries agree at mean cosine %.4f only (< 0.99)", name, chosen, cosine)
        else:
            timing = ", ".join(f"{p} {seconds * 1000:.1f} ms" for p, seconds in self.query_seconds.items())
            logger.info("%s: %s queries (mean cosine to float32: %s%s)", name, chosen, agreement,
                        f"; one query: {timing}" if timing else "")  # fmt: skip

    def _query_timer(self, model: Any, query: str):
        def encode_one() -> None:
            self.query_model = model
            self.encode_batch([query], Side.QUERY)

        return encode_one


class TorchDenseRuntime(TorchRuntime):
    """A sentence-transformers model; the model's ``query``/``document`` prompts applied by
    ``encode_query`` / ``encode_document``. A model that declares no prompts is encoded without
    (one warning); an LFM2.5 model without them is an error."""

    def __init__(
        self,
        model: str,
        *,
        device: str | None = None,
        dtype: torch.dtype | str | None = None,
        quantize: Quantize = "auto",
        normalize: bool = True,
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_padding: float | None = None,
    ) -> None:
        super().__init__(model, dtype)
        self.normalize = normalize  # False: the raw pooled vector (cosine ranks the same)
        device = load_device(device, self.dtype, quantize)
        local_st_config(self.model_name)
        # imported here: sentence-transformers adds scikit-learn and more (~2 s a process on 2 cores), which
        # processes that import the package but build no dense encoder (Ray tasks, the CLI) never need
        from sentence_transformers import SentenceTransformer

        self.model = load_or_explain(self.model_name, SentenceTransformer, device=device)
        is_lfm25 = check_backbone(self.model, self.model_name)
        place(self.model, self.dtype, quantize)
        set_zero_padding(self.model, True)
        self._set_batching(batch_size, max_batch_tokens, max_padding)
        prompts = self.model.prompts or {}
        missing = [side.value for side in Side if not prompts.get(side.value)]
        if missing and is_lfm25:
            raise ModelLoadError(
                f"{self.model_name!r} is an LFM2.5 model but declares no {' / '.join(missing)} prompt "
                "in config_sentence_transformers.json; its vectors would be wrong without them."
            )
        if missing:
            name = model_id_of(self.model_name)  # a local model's folder name, not its full path
            logger.warning("%s declares no %s prompt: encoding without prompts", name, "/".join(missing))
        self.prompts = {side: prompts.get(side.value) or "" for side in Side}
        self.dimension = embedding_dimension(self.model)
        self.max_length = self.model.max_seq_length
        self.prepare_query_model(quantize)

    def token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        prompt = self.prompts[side]
        ids = self.model.tokenizer([prompt + text for text in texts], verbose=False)["input_ids"]
        full = [len(row) for row in ids]
        return [min(n, self.max_length) for n in full], sum(n > self.max_length for n in full)

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        model = self.model_for(side)
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


class TorchColBERTRuntime(TorchRuntime):
    """A PyLate model through PyLate, or sentence-transformers' ``MultiVectorEncoder``
    (sentence-transformers >= 6) where PyLate is not installed (``backend="auto"``)."""

    def __init__(
        self,
        model: str,
        *,
        backend: Backend = "auto",
        device: str | None = None,
        dtype: torch.dtype | str | None = None,
        quantize: Quantize = "auto",
        batch_size: int | None = None,
        max_batch_tokens: int | None = None,
        max_padding: float | None = None,
    ) -> None:
        super().__init__(model, dtype)
        device = load_device(device, self.dtype, quantize)
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
            self.query_prefix: str = self.model.query_prefix
            self.document_prefix: str = self.model.document_prefix
        else:
            from sentence_transformers import MultiVectorEncoder

            self.model = load_or_explain(self.model_name, MultiVectorEncoder, device=device)
            self.query_length = self.model[0].query_expansion["length"]
            self.document_length = self.model[0].document_length
            self.query_prefix = (self.model.prompts or {}).get("query", "")
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
        place(self.model, self.dtype, quantize)
        self._set_batching(batch_size, max_batch_tokens, max_padding)
        self.max_length = self.document_length
        self.dimension = embedding_dimension(self.model)
        self.prepare_query_model(quantize)

    def token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        full = [len(ids) for ids in self.model.tokenizer(texts, verbose=False)["input_ids"]]
        # The prefix token is inserted after tokenisation, within the side's length limit.
        limit = (self.query_length if side is Side.QUERY else self.document_length) - 1
        truncated = sum(n > limit for n in full)
        if side is Side.QUERY:
            return [self.query_length] * len(texts), truncated
        return [min(n, limit) + 1 for n in full], truncated

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        # Query-expansion tokens have mask 0 but are scored: not padding, never zeroed.
        model = self.model_for(side)
        set_zero_padding(model, side is Side.DOCUMENT)
        if self.backend == "pylate":
            arrays = model.encode(texts, is_query=side is Side.QUERY, batch_size=len(texts), show_progress_bar=False)
        else:
            encode = model.encode_query if side is Side.QUERY else model.encode_document
            arrays = encode(texts, batch_size=len(texts), convert_to_numpy=True, show_progress_bar=False)
        arrays = [np.asarray(array, dtype=np.float32) for array in arrays]
        return arrays if in_float32(model) else [unit_rows(array) for array in arrays]


def in_float32(model: Any) -> bool:
    """Whether ``model`` computes in float32 (int8 models do: their int8 layers output float32)."""
    return next(model.parameters()).dtype == torch.float32


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

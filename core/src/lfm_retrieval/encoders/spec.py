"""One serialisable description of an encoder: the CLI, ``serve``, the framework classes, the catalog
job and the Ray engine's actors all build theirs from an :class:`EncoderSpec`
(:func:`lfm_retrieval.encoders.build_encoder`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

KINDS = ("dense", "colbert")
DTYPES = ("float32", "bfloat16", "float16")  # names of runtimes.precision.DTYPES, without importing torch
QUANTIZE = (None, "int8", "queries", "auto")


@dataclass(frozen=True)
class EncoderSpec:
    """What an encoder is: model, runtime, device, precision, batch settings, server.

    ``kind``: ``"dense"`` (:class:`~lfm_retrieval.DenseEncoder`) or ``"colbert"``
    (:class:`~lfm_retrieval.ColBERTEncoder`). ``model`` None is the LFM2.5 model of the kind (or,
    with ``base_url``, the model an ``lfm-retrieval serve`` serves). ``runtime``: ``"auto"``,
    ``"torch"``, ``"gguf"`` or ``"remote"`` (see :func:`lfm_retrieval.runtimes.runtime_kind`).
    ``dtype`` is a name (``"bfloat16"``); the other fields are the encoders' arguments of the same
    names. :meth:`to_dict` / :meth:`from_dict` round-trip through JSON (``api_key`` left out unless
    asked for).

    >>> build_encoder(EncoderSpec("dense", "path/to/model", quantize="int8"))  # doctest: +SKIP
    """

    kind: Literal["dense", "colbert"] = "dense"
    model: str | None = None
    runtime: str = "auto"
    device: str | None = None
    dtype: str | None = None
    quantize: str | None = "auto"
    batch_size: int | None = None
    max_batch_tokens: int | None = None
    chunk_size: int = 1024
    max_padding: float | None = None
    normalize: bool = True  # dense only
    backend: str = "auto"  # ColBERT over torch only: "pylate", "sentence-transformers" or "auto"
    base_url: str | None = None
    api: str = "auto"  # ColBERT over a server: "serve", "llama-server", "vllm" or "auto" (detected)
    prompts: dict[str, str] | str | None = None  # dense over a server or a GGUF file
    api_key: str | None = field(default=None, repr=False)
    headers: dict[str, str] | None = field(default=None, repr=False)
    timeout: float = 60.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be 'dense' or 'colbert', not {self.kind!r}")
        if not isinstance(self.dtype, str | None):  # a torch dtype: keep its name (serialisable)
            object.__setattr__(self, "dtype", str(self.dtype).removeprefix("torch."))
        if self.dtype not in (None, *DTYPES):
            raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {self.dtype!r}")
        if self.quantize not in QUANTIZE:
            raise ValueError(f"quantize must be None, 'int8', 'queries' or 'auto', not {self.quantize!r}")
        if self.kind == "colbert" and self.prompts is not None:
            raise ValueError("prompts= is for dense models; a ColBERT model's prefixes come with the model")
        if self.kind == "dense" and self.api != "auto":
            raise ValueError("api= is for ColBERT models; a dense model's server kind is detected")
        if self.model is not None:
            object.__setattr__(self, "model", str(self.model))

    def encoder_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of the kind's encoder (everything but ``model``)."""
        kwargs = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("kind", "model")}
        for name in ("prompts",) if self.kind == "colbert" else ("backend", "api"):
            del kwargs[name]
        if self.kind == "colbert":
            del kwargs["normalize"]
        return kwargs

    def runtime_kwargs(self) -> dict[str, Any]:
        """The arguments of :func:`~lfm_retrieval.runtimes.dense_runtime` /
        :func:`~lfm_retrieval.runtimes.multivector_runtime` (the encoder's, less its own ``chunk_size``)."""
        kwargs = self.encoder_kwargs()
        del kwargs["chunk_size"]
        return kwargs

    def replace(self, **changes: Any) -> EncoderSpec:
        """A copy with ``changes`` (checked like a new spec)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self, *, secrets: bool = False) -> dict[str, Any]:
        """JSON-ready fields; ``api_key`` and ``headers`` only with ``secrets=True``."""
        data = dataclasses.asdict(self)
        if not secrets:
            data.pop("api_key")
            data.pop("headers")
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> EncoderSpec:
        """The spec :meth:`to_dict` wrote (unknown keys are an error naming them)."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - names)
        if unknown:
            raise ValueError(f"unknown encoder spec field(s): {', '.join(unknown)}")
        return cls(**data)

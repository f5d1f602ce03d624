"""Finding a model, checking it is what the encoder needs, and placing it on a device."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import torch

from lfm_retrieval.errors import ModelLoadError
from lfm_retrieval.int8 import quantize_linear_layers
from lfm_retrieval.models import Lfm2BidirectionalModel, is_bidirectional_checkpoint

Quantize = Literal["int8"] | None


def looks_like_path(model: str) -> bool:
    """A name that is meant as a folder rather than a Hub id such as ``org/name``."""
    return model.startswith((".", "/", "~")) or "\\" in model or model.count("/") > 1 or Path(model).exists()


def local_st_config(model: str) -> dict | None:
    """The folder's ``config_sentence_transformers.json`` (None for a Hub id).

    Raises ModelLoadError when a local path is missing or is not a sentence-transformers
    model, before any library gets to fail deep inside transformers.
    """
    if not looks_like_path(model):
        return None
    folder = Path(model).expanduser()
    if not folder.exists():
        raise ModelLoadError(f"No model at {model!r}: the path does not exist, so no weights were found.")
    if not (folder / "modules.json").is_file():
        raise ModelLoadError(
            f"{model!r} is not a sentence-transformers / PyLate model: it has no modules.json "
            "(expected the layout of LiquidAI/LFM2.5-Embedding-350M or LFM2.5-ColBERT-350M)."
        )
    config_file = folder / "config_sentence_transformers.json"
    return json.loads(config_file.read_text()) if config_file.is_file() else {}


def check_model_path(model: str) -> None:
    """Fail early and clearly: a local path must be a sentence-transformers / PyLate model folder
    (ModelLoadError naming it). Hub ids are accepted as they are (resolved when loaded)."""
    local_st_config(model)


def load_or_explain(model: str, loader, **kwargs):
    """Call ``loader(model, **kwargs)``, turning 'not found' failures into a ModelLoadError."""
    try:
        return loader(model, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelLoadError(
            f"Could not load model {model!r}: no weights were found locally and none could be "
            f"downloaded ({type(exc).__name__}: {exc}). On a machine without Hub access, download "
            "the model elsewhere and pass the path of its folder instead."
        ) from exc


def transformer_of(model: torch.nn.Module) -> torch.nn.Module:
    """The Hugging Face model inside a sentence-transformers / PyLate model."""
    first = model[0]
    return getattr(first, "auto_model", None) or first.model


def embedding_dimension(model: torch.nn.Module) -> int:
    """Output width; sentence-transformers 6 renamed the method."""
    getter = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
    return int(getter())


def check_backbone(model: torch.nn.Module, name: str) -> bool:
    """Refuse a bidirectional LFM2 checkpoint that was built as the causal model.

    Returns whether the checkpoint is a bidirectional LFM2 (an LFM2.5 retriever).
    """
    backbone = transformer_of(model)
    if not is_bidirectional_checkpoint(backbone.config):
        return False
    if not isinstance(backbone, Lfm2BidirectionalModel):
        raise ModelLoadError(
            f"{name!r} declares Lfm2BidirectionalModel but was built as {type(backbone).__name__}: "
            "its vectors would come from the causal model. Load it through lfm_retrieval "
            "(which registers the bidirectional class) and without trust_remote_code."
        )
    return True


def load_device(device: str | None, dtype: torch.dtype | None, quantize: Quantize) -> str | None:
    """Check the placement options before anything is loaded; the device to load on."""
    if quantize not in (None, "int8"):
        raise ValueError(f"quantize must be None or 'int8', not {quantize!r}")
    if quantize == "int8":
        if (device or "cpu") != "cpu" or dtype not in (None, torch.float32):
            raise ValueError("quantize='int8' runs on the CPU in float32; drop device/dtype or quantize")
        return "cpu"
    return device


def place(model: torch.nn.Module, dtype: torch.dtype | None, quantize: Quantize) -> torch.nn.Module:
    """Cast ``model`` to ``dtype``, or make its Linear layers int8 (CPU), then set eval mode."""
    if quantize == "int8":
        quantize_linear_layers(model)
    elif dtype is not None:
        model.to(dtype)
    return model.eval()

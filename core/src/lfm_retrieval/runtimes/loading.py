"""Finding a model, checking it is what the encoder needs, and placing it on a device."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from lfm_retrieval.errors import ModelLoadError

if TYPE_CHECKING:  # the path checks run without the torch runtime installed; the model checks need it
    import torch

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

logger = logging.getLogger("lfm_retrieval")
T = TypeVar("T", int, float)


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
    check_transformer_files(folder)
    config_file = folder / "config_sentence_transformers.json"
    return json.loads(config_file.read_text()) if config_file.is_file() else {}


def check_transformer_files(folder: Path) -> None:
    """Name what is wrong with a local model's transformer files before a library trips on it:
    a missing or unreadable ``config.json``, a model type this transformers does not know,
    a missing weights file, or a safetensors file whose header cannot be read (corrupt)."""
    from safetensors import SafetensorError, safe_open
    from transformers import __version__ as transformers_version
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    modules = _read_json(folder / "modules.json", folder)
    paths = [m.get("path", "") for m in modules if str(m.get("type", "")).endswith(".Transformer")] or [""]
    trunk = folder / paths[0]
    config_file = trunk / "config.json"
    if not config_file.is_file():
        raise ModelLoadError(f"{str(folder)!r} is missing a file: {config_file} (the transformer's config)")
    model_type = _read_json(config_file, folder).get("model_type")
    if model_type is not None and model_type not in CONFIG_MAPPING:
        raise ModelLoadError(
            f"{str(folder)!r} has an unknown model type {model_type!r} (in {config_file}): transformers "
            f"{transformers_version} does not define it. Upgrade transformers or fix config.json."
        )
    if not any((trunk / name).is_file() for name in WEIGHT_FILES):
        raise ModelLoadError(
            f"{str(folder)!r} is missing its weights file: none of {', '.join(WEIGHT_FILES)} in {trunk}"
        )
    for weights in sorted(folder.rglob("*.safetensors")):
        try:
            with safe_open(str(weights), framework="pt"):
                pass
        except (SafetensorError, OSError) as exc:
            raise ModelLoadError(f"{str(folder)!r} has a corrupt weights file {weights}: {exc}") from exc


def _read_json(path: Path, folder: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ModelLoadError(f"{str(folder)!r} has an unreadable or corrupt {path.name} ({path}): {exc}") from exc


def check_model_path(model: str) -> None:
    """Fail early and clearly: a local path must be a sentence-transformers / PyLate model folder or a
    GGUF file (ModelLoadError naming it). Hub ids are accepted as they are (resolved when loaded)."""
    if str(model).lower().endswith(".gguf"):
        from lfm_retrieval.runtimes.gguf_model import check_gguf_file

        check_gguf_file(model)
        return
    local_st_config(model)


def load_or_explain(model: str, loader, **kwargs):
    """Call ``loader(model, **kwargs)``, turning failures into a ModelLoadError that names the cause:
    a local folder's own error as it is, a Hub id that could not be fetched as such."""
    try:
        return loader(model, **kwargs)
    except ModelLoadError:
        raise
    except Exception as exc:
        if looks_like_path(model):
            raise ModelLoadError(f"Could not load the model at {model!r}: {type(exc).__name__}: {exc}") from exc
        if not isinstance(exc, OSError):
            raise ModelLoadError(f"Could not load model {model!r}: {type(exc).__name__}: {exc}") from exc
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
    from lfm_retrieval.models import is_bidirectional_backbone, is_bidirectional_checkpoint

    backbone = transformer_of(model)
    if not is_bidirectional_checkpoint(backbone.config):
        return False
    if not is_bidirectional_backbone(backbone):
        raise ModelLoadError(
            f"{name!r} declares Lfm2BidirectionalModel but was built as {type(backbone).__name__}: "
            "its vectors would come from the causal model. Load it through lfm_retrieval "
            "(which registers the bidirectional class) and without trust_remote_code."
        )
    return True


# Default largest fraction of pad tokens in a batch, per device type, when pads are inert. The
# project's LFM2 leaves pads out of its token-wise layers, so on a CPU a pad costs only attention's
# work: 0.5 lets concurrent queries of mixed lengths share a call at no clear cost for documents.
MAX_PADDING = {"cpu": 0.5, "cuda": 1.0}
# Default texts per batch, per device type (a batch also stays under ``max_batch_tokens``): on a GPU
# large batches spread the per-call launch and Python costs; the CPU keeps sentence-transformers' 32.
BATCH_SIZE = {"cpu": 32, "cuda": 512}
# Default most tokens per batch (once padded), per device type. On a CPU the activations of a
# large batch leave the cache, and every elementwise pass (norms, residuals, int8's quantising and
# rescaling) then runs at memory speed. The measurements behind all three: docs/benchmarks.md.
BATCH_TOKENS = {"cpu": 1024, "cuda": 16384}


def pads_are_inert(backbone: torch.nn.Module) -> bool:
    """Whether right padding leaves a text's vectors unchanged with this backbone.

    Attention-only models (BERT, ...) mask pads; LFM2's convolution reads them unless the
    project's class zeroes them (``zero_padding``); other LFM2 classes do not.
    """
    from lfm_retrieval.models import Lfm2BidirectionalModel

    if isinstance(backbone, Lfm2BidirectionalModel):
        return True
    return not str(getattr(backbone.config, "model_type", "")).startswith("lfm2")


def set_zero_padding(model: torch.nn.Module, on: bool) -> None:
    """Switch pad zeroing of the project's LFM2 backbone inside ``model`` (no-op for others)."""
    from lfm_retrieval.models import Lfm2BidirectionalModel

    backbone = transformer_of(model)
    if isinstance(backbone, Lfm2BidirectionalModel):
        backbone.zero_padding = on


def choose_max_padding(model: torch.nn.Module, requested: float | None) -> float:
    """The pad fraction batches may hold: 0 where pads are not inert, else ``requested``
    or the device's default from :data:`MAX_PADDING`."""
    if requested is not None and not 0.0 <= requested <= 1.0:
        raise ValueError(f"max_padding must be between 0 and 1, not {requested!r}")
    if not pads_are_inert(transformer_of(model)):
        if requested:
            raise ValueError(
                f"max_padding={requested} needs inert pads, but {type(transformer_of(model)).__name__} lets "
                "padding change the vectors of real tokens; use max_padding=0 (equal-length batches)"
            )
        return 0.0
    return per_device(model, requested, MAX_PADDING)


def per_device(model: torch.nn.Module, requested: T | None, defaults: dict[str, T]) -> T:
    """``requested``, or ``defaults`` for the device ``model`` sits on (any accelerator: ``"cuda"``'s)."""
    if requested is not None:
        return requested
    device = next(model.parameters()).device.type
    return defaults.get(device, defaults["cuda"])


def choose_batch_size(model: torch.nn.Module, requested: int | None) -> int:
    """``requested``, or the default for the device ``model`` sits on (:data:`BATCH_SIZE`)."""
    return per_device(model, requested, BATCH_SIZE)


def choose_max_batch_tokens(model: torch.nn.Module, requested: int | None) -> int:
    """``requested``, or the default for the device ``model`` sits on (:data:`BATCH_TOKENS`)."""
    return per_device(model, requested, BATCH_TOKENS)

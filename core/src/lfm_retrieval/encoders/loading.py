"""Finding a model, checking it is what the encoder needs, and placing it on a device."""

from __future__ import annotations

import copy
import functools
import json
import logging
import time
from collections.abc import Callable
from itertools import chain
from pathlib import Path
from typing import Literal, TypeVar

import torch

from lfm_retrieval.encoders.allocator import reuse_freed_memory
from lfm_retrieval.errors import ModelLoadError
from lfm_retrieval.int8 import Int8Linear, quantize_linear_layers
from lfm_retrieval.models import Lfm2BidirectionalModel, is_bidirectional_backbone, is_bidirectional_checkpoint

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)

# None: float32 (or ``dtype``) everywhere; "int8": int8 Linear layers everywhere (CPU);
# "queries": int8 for the query side only, documents in float32 (CPU);
# "auto": a query-side copy in int8 or bfloat16 where it pays and agrees, the faster of the two
# measured on the model when both do (see :func:`query_copy_candidates`), else None.
Quantize = Literal["int8", "queries", "auto"] | None
QUANTIZE_CHOICES = (None, "int8", "queries", "auto")
# "auto" gives queries a reduced-precision copy on CPU for models with at least this many Linear weights:
# measured in benchmarks/encoder/query_latency.py (README, "Queries on CPU"), where int8 pays for a 350M
# model and changes nothing that matters for MiniLM-size models, whose time is not in their matmuls.
QUERY_COPY_MIN_LINEAR_WEIGHTS = 100_000_000
# ... and keeps a copy only when it agrees with float32 on real text (mean cosine).
QUERY_COPY_MIN_AGREEMENT = 0.99
# ... in a precision whose matmul beats float32's on this CPU by at least this much (the rest of an
# int8 layer, quantising activations and rescaling, costs time that float32 does not spend).
# int8: CPUs with int8 dot-product instructions (VNNI, AMX) measure 3-6x; AVX2-only CPUs measure
# 0.03-0.1x (int8 20-30x slower). bfloat16: CPUs with AMX measure ~3x (benchmarks/encoder/query_latency.py).
MIN_MATMUL_SPEEDUP = 1.5
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
    """Fail early and clearly: a local path must be a sentence-transformers / PyLate model folder
    (ModelLoadError naming it). Hub ids are accepted as they are (resolved when loaded)."""
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


# Default largest fraction of pad tokens in a batch, per device type, when pads are inert (see
# README, "Batching"). The project's LFM2 leaves pads out of its token-wise layers, so on a CPU a
# pad costs only attention's (batch x seq^2) work: 2 cores, real-size model, 3 alternating rounds,
# 32 mixed-length queries: 0.2 3.51 s (3 calls), 0.5 3.13 s (1 call), 1.0 2.96 s; 64 catalog-mix
# documents: 0.2 200 tok/s, 0.5 190, 1.0 170. 0.5 takes the queries' gain for no clear document loss.
MAX_PADDING = {"cpu": 0.5, "cuda": 1.0}
# Default texts per batch, per device type (a batch also stays under ``max_batch_tokens``): on a GPU
# large batches spread the per-call launch and Python costs (an H200 in bf16, 4,096 catalog texts:
# 512 ran 1.18x faster than 32, benchmarks/gpu/run.sh); the CPU keeps sentence-transformers' 32.
BATCH_SIZE = {"cpu": 32, "cuda": 512}
# Default most tokens per batch (once padded), per device type. On a CPU the activations of a
# large batch leave the cache, and every elementwise pass (norms, residuals, int8's quantising and
# rescaling) then runs at memory speed: 2 cores of an AMD EPYC (Zen 4, AVX-512 VNNI), real-size
# model, 96 catalog-mix texts (12,814 tokens): int8 317 tok/s at 16,384, 522 at 8,192, 764 at
# 2,048, 885-908 at 1,024, 873 at 768; float32 210-247 tok/s at 8,192-16,384, 243-274 at 1,024-4,096.
BATCH_TOKENS = {"cpu": 1024, "cuda": 16384}


def pads_are_inert(backbone: torch.nn.Module) -> bool:
    """Whether right padding leaves a text's vectors unchanged with this backbone.

    Attention-only models (BERT, ...) mask pads; LFM2's convolution reads them unless the
    project's class zeroes them (``zero_padding``); other LFM2 classes do not.
    """
    if isinstance(backbone, Lfm2BidirectionalModel):
        return True
    return not str(getattr(backbone.config, "model_type", "")).startswith("lfm2")


def set_zero_padding(model: torch.nn.Module, on: bool) -> None:
    """Switch pad zeroing of the project's LFM2 backbone inside ``model`` (no-op for others)."""
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


def load_device(device: str | None, dtype: torch.dtype | None, quantize: Quantize) -> str | None:
    """Check the placement options before anything is loaded; the device to load on."""
    if quantize not in QUANTIZE_CHOICES:
        raise ValueError(f"quantize must be None, 'int8', 'queries' or 'auto', not {quantize!r}")
    if quantize in ("int8", "queries"):
        if (device or "cpu") != "cpu" or dtype not in (None, torch.float32):
            raise ValueError(f"quantize={quantize!r} runs on the CPU in float32; drop device/dtype or quantize")
        check_int8_pays(quantize)
        return "cpu"
    return device


def place(model: torch.nn.Module, dtype: torch.dtype | None, quantize: Quantize) -> torch.nn.Module:
    """Cast ``model`` to ``dtype``, or make its Linear layers int8 (CPU), then set eval mode.
    On the CPU, malloc is also told to keep freed memory for the next batch (:mod:`.allocator`)."""
    if quantize == "int8":
        quantize_linear_layers(model)
    elif dtype is not None:
        model.to(dtype)
    if next(model.parameters()).device.type == "cpu":
        reuse_freed_memory()
    return model.eval()


def linear_weights(model: torch.nn.Module) -> int:
    """How many weights the model's ``nn.Linear`` layers hold (what int8 speeds up)."""
    return sum(m.weight.numel() for m in model.modules() if type(m) is torch.nn.Linear)


# The reduced precisions a query copy may run in (see :func:`query_copy`).
QUERY_PRECISIONS = ("int8", "bfloat16")


@functools.cache
def matmul_speedup(precision: str) -> float:
    """How many times faster torch's ``"int8"`` (``torch._int_mm``) or ``"bfloat16"`` matmul is than
    float32's on this CPU (256 tokens x 1024 -> 1024): best of ten alternating calls each after
    three warm-up calls, measured once per process (a fraction of a second; ~1 s where slow). What it
    tells is whether the CPU has the instructions (VNNI, AMX), so the matmul is large enough that a
    busy machine does not decide it: at 32 tokens (a 0.05 ms int8 call) a run beside a test suite
    on 2 cores measured int8 at 1.2x on a CPU where it is 3-4x."""
    if precision not in QUERY_PRECISIONS:
        raise ValueError(f"precision must be one of {QUERY_PRECISIONS}, not {precision!r}")
    rows, width = 256, 1024
    a8 = torch.randint(-127, 128, (rows, width), dtype=torch.int8)
    w8 = torch.randint(-127, 128, (width, width), dtype=torch.int8)
    a32, w32 = a8.float(), w8.float()
    a16, w16 = a32.bfloat16(), w32.bfloat16()
    fast = (lambda: torch._int_mm(a8, w8)) if precision == "int8" else (lambda: a16 @ w16)
    with torch.inference_mode():
        _, best = fastest({"float32": lambda: a32 @ w32, precision: fast}, rounds=10, warmups=3)
    return best["float32"] / best[precision]


def fastest(ops: dict[str, Callable[[], object]], rounds: int = 3, warmups: int = 1) -> tuple[str, dict[str, float]]:
    """The key of the fastest of ``ops`` and each one's best time in seconds: ``warmups`` untimed
    calls each, then ``rounds`` rounds calling each once in turn (alternating, so a busy moment of a
    shared machine falls on all of them alike)."""
    best = dict.fromkeys(ops, float("inf"))
    for op in ops.values():
        for _ in range(warmups):
            op()
    for _ in range(rounds):
        for key, op in ops.items():
            start = time.perf_counter()
            op()
            best[key] = min(best[key], time.perf_counter() - start)
    return min(best, key=best.__getitem__), best


def check_int8_pays(quantize: Quantize) -> None:
    """Warn when int8 was asked for on a CPU where it is slower than float32."""
    if quantize in ("int8", "queries") and (speedup := matmul_speedup("int8")) < MIN_MATMUL_SPEEDUP:
        logger.warning(
            "quantize=%r on a CPU whose int8 matmul runs at %.2fx float32's (no int8 dot-product "
            "instructions): encoding will be slower than float32, not faster",
            quantize, speedup,
        )  # fmt: skip


def query_copy_candidates(model: torch.nn.Module, quantize: Quantize, dtype: torch.dtype | None) -> list[str]:
    """The precisions to try for a query-side copy of ``model``: ``["int8"]`` when asked for
    (``"queries"``); with ``"auto"``, on a CPU-resident float32 model with at least
    :data:`QUERY_COPY_MIN_LINEAR_WEIGHTS`, each of :data:`QUERY_PRECISIONS` whose matmul runs at
    least :data:`MIN_MATMUL_SPEEDUP` times float32's on this CPU; else none."""
    if quantize == "queries":
        return ["int8"]
    if quantize != "auto" or dtype not in (None, torch.float32):
        return []
    if next(model.parameters()).device.type != "cpu" or linear_weights(model) < QUERY_COPY_MIN_LINEAR_WEIGHTS:
        return []
    return [precision for precision in QUERY_PRECISIONS if matmul_speedup(precision) >= MIN_MATMUL_SPEEDUP]


def query_copy(model: torch.nn.Module, precision: str) -> torch.nn.Module:
    """A copy of ``model`` for the query side. ``"int8"``: its Linear layers int8, sharing every other
    tensor with ``model`` (embeddings, norms, convolutions; +1 byte per Linear weight).
    ``"bfloat16"``: every floating-point tensor in bfloat16 (+2 bytes per weight), cast one tensor
    at a time so that no second float32 copy is ever made."""
    tensors = list(chain(model.parameters(), model.buffers()))
    if precision == "int8":
        memo = {id(tensor): tensor for tensor in tensors}
    elif precision == "bfloat16":
        memo = {id(tensor): _in_bfloat16(tensor) for tensor in tensors}
    else:
        raise ValueError(f"precision must be one of {QUERY_PRECISIONS}, not {precision!r}")
    clone = copy.deepcopy(model, memo=memo)
    if precision == "int8":
        quantize_linear_layers(clone)
    return clone.eval()


def _in_bfloat16(tensor: torch.Tensor) -> torch.Tensor:
    if not tensor.is_floating_point():
        return tensor
    cast = tensor.detach().to(torch.bfloat16)
    return torch.nn.Parameter(cast, requires_grad=False) if isinstance(tensor, torch.nn.Parameter) else cast


def precision_of(model: torch.nn.Module) -> str:
    """``"int8"`` for a model with int8 Linear layers, else its parameters' dtype (``"float32"``, ...)."""
    return "int8" if is_int8(model) else str(next(model.parameters()).dtype).removeprefix("torch.")


def is_int8(model: torch.nn.Module) -> bool:
    """Whether ``model``'s Linear layers are int8."""
    return any(isinstance(m, Int8Linear) for m in model.modules())

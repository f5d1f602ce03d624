"""Precision, in one place: float32, bfloat16/float16, int8 Linear layers, and the reduced-precision
query copy that ``quantize="auto"`` measures on the CPU it runs on."""

from __future__ import annotations

import copy
import functools
import logging
import time
from collections.abc import Callable
from itertools import chain
from typing import Literal

import torch

from lfm_retrieval.int8 import Int8Linear, quantize_linear_layers
from lfm_retrieval.runtimes.allocator import reuse_freed_memory

# None: float32 (or ``dtype``) everywhere; "int8": int8 Linear layers everywhere (CPU);
# "queries": int8 for the query side only, documents in float32 (CPU);
# "auto": a query-side copy in int8 or bfloat16 where it pays and agrees, the faster of the two
# measured on the model when both do (see :func:`query_copy_candidates`), else None.
Quantize = Literal["int8", "queries", "auto"] | None
QUANTIZE_CHOICES = (None, "int8", "queries", "auto")
# "auto" gives queries a reduced-precision copy on CPU for models with at least this many Linear weights:
# measured in benchmarks/encoder/query_latency.py (docs/runtimes/precision.md), where int8 pays for a 350M
# model and changes nothing that matters for MiniLM-size models, whose time is not in their matmuls.
QUERY_COPY_MIN_LINEAR_WEIGHTS = 100_000_000
# ... and keeps a copy only when it agrees with float32 on real text (mean cosine).
QUERY_COPY_MIN_AGREEMENT = 0.99
# ... in a precision whose matmul beats float32's on this CPU by at least this much (the rest of an
# int8 layer, quantising activations and rescaling, costs time that float32 does not spend).
# int8: CPUs with int8 dot-product instructions (VNNI, AMX) measure 3-6x; AVX2-only CPUs measure
# 0.03-0.1x (int8 20-30x slower). bfloat16: CPUs with AMX measure ~3x (benchmarks/encoder/query_latency.py).
MIN_MATMUL_SPEEDUP = 1.5
# The dtypes a model may be cast to, by name (the CLI's --dtype, an EncoderSpec's ``dtype``).
DTYPES = ("float32", "bfloat16", "float16")
logger = logging.getLogger("lfm_retrieval")


def torch_dtype(dtype: str | torch.dtype | None) -> torch.dtype | None:
    """``dtype`` as a torch dtype: a name of :data:`DTYPES`, a torch dtype, or None (as loaded)."""
    if dtype is None or isinstance(dtype, torch.dtype):
        return dtype
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, not {dtype!r}")
    return getattr(torch, dtype)


def dtype_name(dtype: torch.dtype | None) -> str | None:
    """The name of a torch dtype (``torch.bfloat16`` -> ``"bfloat16"``), None for None."""
    return None if dtype is None else str(dtype).removeprefix("torch.")


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

"""Int8 inference for the Linear layers on CPU: per-channel weights, per-token activations.

Written here because torch's ``quantize_dynamic`` takes one activation scale per batch
(a text's vector then depends on its batch, and all-MiniLM-L6-v2 agreed with float32
at cosine 0.94-0.97), and torchao ties each release to one torch version, which the
two supported stacks cannot share. The int8 matmul itself is oneDNN's, through the
``onednn::qlinear_pointwise`` operator that torch's own x86 quantisation uses (weights packed
once for this CPU, the per-channel rescaling fused into the matmul); where that operator is
missing or not exact, ``torch._int_mm``.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from torch import nn


@functools.cache
def onednn_int8_is_exact() -> bool:
    """Whether oneDNN's int8 linear is available here and sums exactly like ``torch._int_mm``, checked
    once per process on extreme values (CPUs without int8 dot-product instructions may saturate
    16-bit intermediate sums)."""
    try:
        x = torch.tensor([[127, -128] * 512, [-128, 127] * 512, [127] * 1024], dtype=torch.int8)
        w = torch.tensor([[127] * 1024, [-128] * 1024, [127, -128] * 512], dtype=torch.int8)
        ones, zeros = torch.ones(3), torch.zeros(3, dtype=torch.long)
        out = _onednn_linear(x, torch.ops.onednn.qlinear_prepack(w, None), ones, zeros)
        return torch.equal(out, torch._int_mm(x, w.t().contiguous()).float())
    except (AttributeError, RuntimeError, NotImplementedError):
        return False


def _onednn_linear(q: torch.Tensor, packed: torch.Tensor, scale: torch.Tensor, zero_points: torch.Tensor):
    """int8 ``q`` @ the packed int8 weight, each output channel times ``scale``, in float32."""
    return torch.ops.onednn.qlinear_pointwise(
        q, 1.0, 0, packed, scale, zero_points, None, 1.0, 0, torch.float32, "none", [], ""
    )  # fmt: skip


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights (one scale per output channel) and int8 inputs
    quantised per token at run time; accumulates in int32 and rescales to float32.

    ``onednn=None`` uses oneDNN's packed int8 matmul where :func:`onednn_int8_is_exact`, else
    ``torch._int_mm``; both give a text the same vector alone or in any batch."""

    def __init__(self, linear: nn.Linear, onednn: bool | None = None) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        weight8 = torch.round(weight / scale[:, None]).to(torch.int8)  # (out, in), contiguous
        self.register_buffer("weight_scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self.zero_points = torch.zeros(self.out_features, dtype=torch.long)
        # one of the two: oneDNN's packed weight (opaque, laid out for this CPU) or the (in, out) int8 matrix
        use_onednn = onednn_int8_is_exact() if onednn is None else onednn
        self.packed = torch.ops.onednn.qlinear_prepack(weight8, None) if use_onednn else None
        self.register_buffer("weight_t", None if use_onednn else weight8.t().contiguous())

    def int8_weight(self) -> torch.Tensor:
        """The int8 weights as an (in_features, out_features) matrix."""
        return self.weight_t if self.packed is None else self.packed.to_dense()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).float()
        # Every pass here runs at memory speed once a batch leaves the cache (encoders keep CPU
        # batches at 1,024 tokens, BATCH_TOKENS): one reciprocal per row, then scale, round, cast.
        amax = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-8)
        q = (rows * (127.0 / amax)).round_().to(torch.int8)
        if self.packed is not None:
            out = _onednn_linear(q, self.packed, self.weight_scale, self.zero_points).mul_(amax / 127.0)
        else:
            out = torch._int_mm(q, self.weight_t).float().mul_(amax / 127.0).mul_(self.weight_scale)
        if self.bias is not None:
            out += self.bias
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def __getstate__(self) -> dict:
        # oneDNN's packed tensor has no storage to copy or pickle: carry the plain int8 matrix instead
        state = self.__dict__.copy()
        if self.packed is not None:
            state["packed"] = self.packed.to_dense()
        return state

    def __setstate__(self, state: dict) -> None:
        packed = state.get("packed")
        if packed is not None and not packed.is_mkldnn:
            state["packed"] = torch.ops.onednn.qlinear_prepack(packed.t().contiguous(), None)
        super().__setstate__(state)

    def extra_repr(self) -> str:
        kernel = "onednn" if self.packed is not None else "_int_mm"
        shape = f"in_features={self.in_features}, out_features={self.out_features}"
        return f"{shape}, bias={self.bias is not None}, {kernel}"


def quantize_linear_layers(model: nn.Module) -> int:
    """Replace every ``nn.Linear`` inside ``model`` by an :class:`Int8Linear`, in place."""
    replaced = 0
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Linear:
                setattr(parent, name, Int8Linear(child))
                replaced += 1
    return replaced


# Real queries the encoders' int8 and bfloat16 query copies are checked on when a model loads (agreement with
# float32): short, multilingual, as a shop's search box receives them.
CALIBRATION_QUERIES = (
    "waterproof trail running shoes for women",
    "cast iron skillet 28 cm",
    "chaussures de randonnée imperméables homme",
    "Kaffeevollautomat mit Milchaufschäumer",
    "zapatillas de running con amortiguación",
    "borraccia in acciaio inossidabile 1 litro",
    "noise cancelling wireless headphones under 200 euros",
    "防水 ハイキングシューズ メンズ",
    "笔记本电脑 背包 15英寸",
    "طقم أواني طهي غير لاصقة",
    "детское автокресло от 9 до 36 кг",
    "how do I descale an espresso machine",
)


def row_cosines(reference: list, candidate: list) -> np.ndarray:
    """Cosine between matching rows of two lists of vectors or (tokens, dim) arrays, one per row."""
    a = np.concatenate([np.asarray(v, np.float64).reshape(-1, np.shape(v)[-1]) for v in reference])
    b = np.concatenate([np.asarray(v, np.float64).reshape(-1, np.shape(v)[-1]) for v in candidate])
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)


def mean_cosine(reference: list, candidate: list) -> float:
    """Mean cosine between matching rows of two lists of vectors or (tokens, dim) arrays."""
    return float(np.mean(row_cosines(reference, candidate)))

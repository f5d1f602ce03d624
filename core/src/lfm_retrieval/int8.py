"""Int8 inference for the Linear layers on CPU: per-channel weights, per-token activations.

Written here because torch's ``quantize_dynamic`` takes one activation scale per batch
(a text's vector then depends on its batch, and all-MiniLM-L6-v2 agreed with float32
at cosine 0.94-0.97), and torchao ties each release to one torch version, which the
two supported stacks cannot share. ``torch._int_mm`` runs the int8 matmul itself.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn


class Int8Linear(nn.Module):
    """``nn.Linear`` with int8 weights (one scale per output channel) and int8 inputs
    quantised per token at run time; accumulates in int32 and rescales to float32."""

    def __init__(self, linear: nn.Linear) -> None:
        super().__init__()
        weight = linear.weight.detach().float()
        scale = weight.abs().amax(dim=1).clamp(min=1e-8) / 127.0
        self.register_buffer("weight_t", torch.round(weight / scale[:, None]).to(torch.int8).t().contiguous())
        self.register_buffer("weight_scale", scale)
        self.bias = None if linear.bias is None else nn.Parameter(linear.bias.detach().float(), requires_grad=False)
        self.in_features, self.out_features = linear.in_features, linear.out_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        rows = x.reshape(-1, shape[-1]).float()
        # Every pass here runs at memory speed once a batch leaves the cache (encoders keep CPU
        # batches at 1,024 tokens, BATCH_TOKENS): one reciprocal per row, then cast-scale-scale
        # in place (bit-identical to an int32 x float32 promoting multiply, ~12 % faster).
        amax = rows.abs().amax(dim=1, keepdim=True).clamp_(min=1e-8)
        q = (rows * (127.0 / amax)).round_().to(torch.int8)
        out = torch._int_mm(q, self.weight_t).float().mul_(amax / 127.0).mul_(self.weight_scale)
        if self.bias is not None:
            out += self.bias
        return out.reshape(*shape[:-1], self.out_features).to(x.dtype)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}"


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


def mean_cosine(reference: list, candidate: list) -> float:
    """Mean cosine between matching rows of two lists of vectors or (tokens, dim) arrays."""
    a = np.concatenate([np.asarray(v, np.float64).reshape(-1, np.shape(v)[-1]) for v in reference])
    b = np.concatenate([np.asarray(v, np.float64).reshape(-1, np.shape(v)[-1]) for v in candidate])
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return float(np.mean(np.sum(a * b, axis=1) / np.maximum(norms, 1e-12)))

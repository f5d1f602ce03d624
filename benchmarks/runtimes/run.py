"""torch against llama.cpp on CPU: the suite's default, torch fp32 / int8 / bf16 and llama.cpp f16 / q8_0 / q4_k_m.

The peer a CPU user would pick instead of torch is llama.cpp with a GGUF. On the real-size LFM2.5
architecture (random weights: the compute is real, the outputs are not), dense (LFM2.5-Embedding) and
ColBERT (LFM2.5-ColBERT), converted to GGUF by llama.cpp's own converter and quantiser
(``lfm_retrieval.runtimes.gguf_convert``), on the same texts and the same thread count:

  * documents tok/s over ``--texts`` catalog-mix texts (``benchmarks/encoder/run.py``'s length mix),
  * batch-of-one query p50 over ``--queries`` queries of 24 to 32 tokens,
  * each configuration's least and mean cosine to torch float32, per side (dense: per text; ColBERT:
    per token, the token counts asserted equal).

``default`` is the encoder with no precision arguments (``DenseEncoder(path)`` /
``ColBERTEncoder(path)``): what a user gets; the JSON records what it picked. Each configuration runs
in its own process (torch's and ggml's thread pools never share one), the order rotating every repeat;
the load average is recorded before and after. The verdict, per side: the fastest llama.cpp type whose
least cosine is >= 0.99, and ``default`` / that one (>= 1.0: the default is at least as fast).

    .venvs/latest/bin/python benchmarks/runtimes/run.py --model dense            # 192 texts, 3 repeats
    .venvs/latest/bin/python benchmarks/runtimes/run.py --model both --texts 16 --repeats 1   # smoke
    .venvs/latest/bin/python benchmarks/runtimes/run.py --size tiny --texts 16 --repeats 1    # code path only
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from common import load_average, write_results

TORCH = {  # config -> encoder keyword arguments
    "default": {},
    "torch-fp32": {"device": "cpu", "quantize": None},
    "torch-int8": {"device": "cpu", "quantize": "int8"},
    "torch-bf16": {"device": "cpu", "dtype": "bfloat16", "quantize": None},
}
GGUF = {"gguf-f16": "f16", "gguf-q8_0": "q8_0", "gguf-q4_k_m": "q4_k_m"}  # config -> GGUF type
# the default encoder on a model folder that also holds these GGUFs: it measures them against torch at load
# and runs each side on the fastest that agrees (lfm_retrieval.runtimes.per_side)
BESIDE = {"default+gguf": ("f16", "q8_0")}
CONFIGS = (*TORCH, *GGUF, *BESIDE)
MIN_COSINE = 0.99  # the least cosine to torch float32 a llama.cpp type must keep to count
PREFIX = {"dense": "document: ", "colbert": "[D] "}  # the document side's prompt / prefix, for the token count


def prepare(work: Path, kind: str, size: str, n_texts: int, n_queries: int) -> dict[str, Any]:
    """The checkpoint, its GGUF files and the texts, made once under ``work`` (kept between runs)."""
    from transformers import AutoTokenizer

    from lfm_retrieval.runtimes.gguf_convert import convert
    from lfm_retrieval.testing import build_colbert_checkpoint, build_dense_checkpoint, lfm25_config

    checkpoint = work / kind
    if not (checkpoint / "modules.json").is_file():
        build = build_dense_checkpoint if kind == "dense" else build_colbert_checkpoint
        build(checkpoint, config=lfm25_config() if size == "real" else None)
    for outtype in GGUF.values():
        target = work / f"{kind}-{outtype}.gguf"
        if not target.is_file():
            started = time.perf_counter()
            # the benchmark measures the agreement itself: no conversion refused for it
            convert(checkpoint, target, outtype, verify=False)
            print(f"converted {target.name} in {time.perf_counter() - started:.0f} s", flush=True)
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
    if len(queries) < n_queries:
        raise SystemExit(f"only {len(queries)} queries of 24-32 tokens made from the catalog mix; ask fewer")
    tokens = sum(len(ids) for ids in tokenizer([PREFIX[kind] + text for text in texts])["input_ids"])
    data = {"texts": texts, "queries": queries[:n_queries], "tokens": tokens}
    (work / f"{kind}-texts.json").write_text(json.dumps(data))
    return data


def load(kind: str, config: str, work: Path, threads: int) -> Any:
    """The encoder of ``config``: torch with its precision arguments, or llama.cpp on ``threads`` threads."""
    from lfm_retrieval import ColBERTEncoder, DenseEncoder

    checkpoint = work / kind
    encoder_class = DenseEncoder if kind == "dense" else ColBERTEncoder
    if config in TORCH or config in BESIDE:
        import torch

        torch.set_num_threads(threads)
        if config in BESIDE:
            return encoder_class(str(folder_with_ggufs(work, kind, BESIDE[config])))
        return encoder_class(str(checkpoint), **TORCH[config])
    path = work / f"{kind}-{GGUF[config]}.gguf"
    if kind == "dense":
        from lfm_retrieval.runtimes.gguf import GGUFDenseRuntime

        return DenseEncoder(runtime=GGUFDenseRuntime(path, n_threads=threads))
    from lfm_retrieval.runtimes.gguf import GGUFColBERTRuntime

    settings = json.loads((checkpoint / "config_sentence_transformers.json").read_text())
    keys = ("query_prefix", "document_prefix", "query_length", "document_length", "skiplist_words")
    runtime = GGUFColBERTRuntime(path, n_threads=threads, **{key: settings[key] for key in keys if key in settings})
    return ColBERTEncoder(runtime=runtime)


def folder_with_ggufs(work: Path, kind: str, outtypes: tuple[str, ...]) -> Path:
    """A model folder of links to the checkpoint's files and to its GGUFs of ``outtypes``."""
    folder = work / f"{kind}-with-gguf"
    folder.mkdir(exist_ok=True)
    files = [*(work / kind).iterdir(), *(work / f"{kind}-{outtype}.gguf" for outtype in outtypes)]
    for source in files:
        if not (folder / source.name).exists():
            (folder / source.name).symlink_to(source.resolve())
    return folder


def child(kind: str, config: str, work: Path, threads: int) -> None:
    """One configuration in this process: load, warm up, time the documents and single queries, save the vectors."""
    data = json.loads((work / f"{kind}-texts.json").read_text())
    started = time.perf_counter()
    encoder = load(kind, config, work, threads)
    load_seconds = time.perf_counter() - started
    encoder.encode_documents(data["texts"][:8])
    for query in data["queries"][:3]:
        encoder.encode_queries([query])
    started = time.perf_counter()
    documents = encoder.encode_documents(data["texts"])
    seconds = time.perf_counter() - started
    latencies, queries = [], []
    for query in data["queries"]:
        started = time.perf_counter()
        queries.append(encoder.encode_queries([query])[0])
        latencies.append(time.perf_counter() - started)
    save(work / f"{kind}-{config}-documents.npz", list(documents))
    save(work / f"{kind}-{config}-queries.npz", queries)
    runtime = encoder.runtime
    picked = {
        "runtime": type(runtime).__name__,
        "query_precision": encoder.query_precision,
        "query_agreement": dict(getattr(runtime, "query_agreement", None) or {}),
    }
    if choice := getattr(runtime, "runtime_choice", None):  # default+gguf: what the load measured, per side
        picked["runtime_choice"] = {side.value: vars(c) for side, c in choice.items()}
    print(json.dumps({"tok_s": data["tokens"] / seconds, "query_p50_ms": 1000 * statistics.median(latencies),
                      "load_s": load_seconds, "load_average": load_average(), "picked": picked}))  # fmt: skip


def save(path: Path, vectors: list[np.ndarray]) -> None:
    """Vectors of one side (dense rows or ColBERT token matrices) in one file, with each one's shape."""
    shapes = np.array([np.shape(v) if np.ndim(v) == 2 else (1, len(v)) for v in vectors])
    np.savez(path, rows=np.concatenate([np.reshape(v, (-1, shapes[0][1])) for v in vectors]), shapes=shapes)


def cosines(work: Path, kind: str, config: str, side: str) -> tuple[float, float]:
    """Least and mean cosine of ``config``'s vectors to torch float32's: per text (dense), per token (ColBERT)."""
    ours, theirs = np.load(work / f"{kind}-{config}-{side}.npz"), np.load(work / f"{kind}-torch-fp32-{side}.npz")
    if not np.array_equal(ours["shapes"], theirs["shapes"]):
        raise SystemExit(f"{kind} {config} {side}: other token counts than torch float32")
    per_row = np.sum(ours["rows"] * theirs["rows"], axis=1)  # unit rows on both sides
    return float(np.min(per_row)), float(np.mean(per_row))


def summary(work: Path, kind: str, runs: dict[str, list[dict]]) -> dict[str, dict[str, Any]]:
    """Per configuration: median and spread of the repeats, the agreement with torch float32, what it runs."""
    rows = {}
    for config, done in runs.items():
        tok_s, p50 = [run["tok_s"] for run in done], [run["query_p50_ms"] for run in done]
        row: dict[str, Any] = {
            "tok_s": statistics.median(tok_s), "tok_s_spread": [min(tok_s), max(tok_s)],
            "query_p50_ms": statistics.median(p50), "query_p50_ms_spread": [min(p50), max(p50)],
            "picked": done[-1]["picked"],
        }  # fmt: skip
        for side in ("documents", "queries"):
            row[f"min_cosine_{side}"], row[f"mean_cosine_{side}"] = cosines(work, kind, config, side)
        rows[config] = row
    return rows


def verdict(rows: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per side, the fastest llama.cpp type with least cosine >= :data:`MIN_COSINE`, and how ``default``
    compares (speed ratio: >= 1.0 means the default is at least as fast); absent where none agrees."""
    result: dict[str, Any] = {}
    for side, key, faster in (("documents", "tok_s", max), ("queries", "query_p50_ms", min)):
        agreeing = [c for c in GGUF if c in rows and rows[c][f"min_cosine_{side}"] >= MIN_COSINE]
        if not agreeing:
            result[side] = {"fastest_agreeing_gguf": None}
            continue
        best = faster(agreeing, key=lambda c: rows[c][key])
        entry: dict[str, Any] = {"fastest_agreeing_gguf": best}
        if "default" in rows:
            ours, theirs = rows["default"][key], rows[best][key]
            entry["default_speed_ratio"] = ours / theirs if key == "tok_s" else theirs / ours
            entry["target_met"] = entry["default_speed_ratio"] >= 1.0
        result[side] = entry
    return result


def print_table(kind: str, rows: dict[str, dict[str, Any]], result: dict[str, Any]) -> None:
    print(f"\n{kind}: {'config':<12} {'docs tok/s':>10} {'query p50 ms':>13} {'cos docs min/mean':>18} "
          f"{'cos queries min/mean':>21}  picked")  # fmt: skip
    for config, row in rows.items():
        cos_d = f"{row['min_cosine_documents']:.5f}/{row['mean_cosine_documents']:.5f}"
        cos_q = f"{row['min_cosine_queries']:.5f}/{row['mean_cosine_queries']:.5f}"
        picked = f"{row['picked']['runtime']} ({row['picked']['query_precision']} queries)"
        print(f"{' ' * len(kind)}  {config:<12} {row['tok_s']:>10.1f} {row['query_p50_ms']:>13.1f} "
              f"{cos_d:>18} {cos_q:>21}  {picked}")  # fmt: skip
    for side, entry in result.items():
        best = entry["fastest_agreeing_gguf"]
        if best is None:
            print(f"{side}: no llama.cpp type keeps least cosine >= {MIN_COSINE}")
        elif "default_speed_ratio" in entry:
            met = "met" if entry["target_met"] else "NOT met"
            print(f"{side}: fastest agreeing llama.cpp type {best}; default {entry['default_speed_ratio']:.2f}x it "
                  f"(target >= 1.0x: {met})")  # fmt: skip
        else:
            print(f"{side}: fastest agreeing llama.cpp type {best}")


def run_model(kind: str, args: argparse.Namespace, configs: list[str]) -> dict[str, Any]:
    """Prepare one model, run every configuration ``--repeats`` times in rotating order, summarise."""
    work = args.work / args.size
    work.mkdir(parents=True, exist_ok=True)
    data = prepare(work, kind, args.size, args.texts, args.queries)
    load_before = load_average()
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    runs: dict[str, list[dict]] = {config: [] for config in configs}
    started = time.perf_counter()
    for repeat in range(args.repeats):
        for config in configs[repeat % len(configs) :] + configs[: repeat % len(configs)]:
            command = [sys.executable, __file__, "--child", config, "--model", kind, "--size", args.size,
                       "--work", str(args.work), "--threads", str(args.threads)]  # fmt: skip
            done = subprocess.run(command, capture_output=True, text=True, env=env)
            if done.returncode != 0:
                raise SystemExit(f"{kind} {config} failed:\n{done.stderr[-3000:]}")
            runs[config].append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(kind, repeat, config, {k: v for k, v in runs[config][-1].items() if k != "picked"}, flush=True)
    rows = summary(work, kind, {config: runs[config] for config in configs})
    result = verdict(rows)
    print_table(kind, rows, result)
    return {
        "size": args.size, "texts": len(data["texts"]), "tokens": data["tokens"], "queries": len(data["queries"]),
        "seconds": time.perf_counter() - started, "load_average_before": load_before,
        "load_average_after": load_average(), "rows": rows, "verdict": result, "runs": runs,
    }  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", choices=("dense", "colbert", "both"), default="both")
    size_help = "real: the LFM2.5 architecture; tiny: the test checkpoints (checks the code path only)"
    parser.add_argument("--size", choices=("real", "tiny"), default="real", help=size_help)
    parser.add_argument("--texts", type=int, default=192)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    parser.add_argument("--configs", default=",".join(CONFIGS), help=f"a subset of {','.join(CONFIGS)}")
    parser.add_argument("--work", type=Path, default=Path("/tmp/lfm-runtimes-benchmark"))
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        return child(args.model, args.child, args.work / args.size, args.threads)
    configs = args.configs.split(",")
    unknown = set(configs) - set(CONFIGS)
    if unknown or "torch-fp32" not in configs:
        raise SystemExit(f"--configs: unknown {sorted(unknown)}; torch-fp32 (the reference) must be among them")
    import llama_cpp
    import torch

    import lfm_retrieval

    setting = {
        "machine": {"platform": platform.platform(), "processor": platform.processor(), "cpus": os.cpu_count(),
                    "torch": torch.__version__, "llama_cpp_python": llama_cpp.__version__,
                    "lfm_retrieval": str(Path(lfm_retrieval.__file__).parent)},
        "threads": args.threads, "repeats": args.repeats, "configs": configs, "min_cosine": MIN_COSINE,
    }  # fmt: skip
    for kind in ("dense", "colbert") if args.model == "both" else (args.model,):
        # one file per model: a long run keeps the first model's results if the second one fails
        write_results({**setting, "model": kind, **run_model(kind, args, configs)}, args.out, f"runtimes-{kind}")


if __name__ == "__main__":
    main()

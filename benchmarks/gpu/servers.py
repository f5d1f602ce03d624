"""vLLM and SGLang against the torch runtime on one GPU: tokens/s and vectors, through the remote runtime.

For each engine installed on the machine (``vllm``, ``sglang``; one not installed is reported and
skipped), start its server on the dense model and (vLLM only: SGLang has no token-embedding route)
the ColBERT model, encode the same documents and queries through ``DenseEncoder(base_url=...)`` /
``ColBERTEncoder(path, base_url=..., api="vllm")`` and through the in-process torch runtime, and
report each side's tokens/s (server / torch, measured in this run, alternating) and how far the
vectors are from torch's (max abs difference; ColBERT: shapes too). vLLM's ColBERT queries attend to
the expansion tokens (docs/runtimes/index.md, "Who applies what"), so only documents are expected
to agree to rounding.

    python benchmarks/gpu/servers.py --device cuda --dtype bfloat16 \
        [--dense PATH --colbert PATH]   # default: the real-size random LFM2.5 checkpoints

Server arguments can be replaced (``--vllm-dense-args``, ...): LFM2.5's backbone is bidirectional,
and which vLLM / SGLang model class serves it as such is what this script is for finding out.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
sys.path.insert(0, str(Path(__file__).parents[1] / "concurrency"))
sys.path.insert(0, str(Path(__file__).parents[2] / "tests"))
from common import load_average, write_results
from load import model_path

from lfm_retrieval import ColBERTEncoder, DenseEncoder, Side
from lfm_retrieval.testing.servers import free_port
from sample_texts import MIXED

SERVER_ARGS = {
    ("vllm", "dense"): "--runner pooling --convert embed --trust-remote-code",
    ("vllm", "colbert"): '--runner pooling --hf-overrides {"architectures":["ColBERTLfm2Model"]}',
    ("sglang", "dense"): "--is-embedding --trust-remote-code",
    ("serve", "dense"): "dense",
    ("serve", "colbert"): "colbert",
}


def command(engine: str, model: str, port: int, dtype: str, extra: str) -> list[str]:
    """The server's command line on ``port`` (half the GPU's memory: the torch model shares it)."""
    if engine == "serve":  # lfm-retrieval serve: rehearses this script where no engine is installed
        flags = ["--model", model] if extra == "dense" else ["--model", "none", "--colbert", model]
        return ["lfm-retrieval", "serve", *flags, "--port", str(port), "--dtype", dtype, "--device", "cpu"]
    if engine == "vllm":
        base = ["vllm", "serve", model, "--port", str(port), "--dtype", dtype, "--gpu-memory-utilization", "0.5"]
    else:
        base = [sys.executable, "-m", "sglang.launch_server", "--model-path", model, "--port", str(port)]
        base += ["--dtype", dtype, "--mem-fraction-static", "0.5"]
    return base + shlex.split(extra)


def started(cmd: list[str], url: str, log: Path, timeout: float) -> subprocess.Popen | None:
    """The server process once ``GET /health`` answers 200, or None (stopped, log kept) if it exits or times out."""
    process = subprocess.Popen(cmd, stdout=log.open("w"), stderr=subprocess.STDOUT, start_new_session=True)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and process.poll() is None:
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(1)
    stop(process)
    return None


def stop(process: subprocess.Popen) -> None:
    """SIGTERM to the server's own process group (it was started in a new session), then SIGKILL."""
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def token_count(encoder, texts: list[str], side: Side) -> int:
    """The tokens the torch runtime runs for ``texts`` on ``side`` (prompt or prefix included)."""
    return sum(encoder._token_lengths(texts, side)[0])


def timed(encode, texts: list[str]) -> tuple[list[np.ndarray], float]:
    start = time.perf_counter()
    vectors = encode(texts)
    return [np.asarray(v, np.float32) for v in vectors], time.perf_counter() - start


def compare(engine: str, kind: str, local, remote, documents: list[str], queries: list[str], repeats: int) -> dict:
    """Tokens/s of both encoders (alternating, best of ``repeats``) and the vectors' differences."""
    tokens = {
        "documents": token_count(local, documents, Side.DOCUMENT),
        "queries": token_count(local, queries, Side.QUERY),
    }
    row: dict = {"engine": engine, "kind": kind, "tokens": tokens}
    for side, texts in (("documents", documents), ("queries", queries)):
        encode = {"torch": getattr(local, f"encode_{side}"), engine: getattr(remote, f"encode_{side}")}
        seconds = {name: float("inf") for name in encode}
        vectors = {}
        for _ in range(repeats):
            for name, fn in encode.items():
                vectors[name], took = timed(fn, texts)
                seconds[name] = min(seconds[name], took)
        pairs = list(zip(vectors[engine], vectors["torch"], strict=True))
        same_shape = all(a.shape == b.shape for a, b in pairs)
        row[side] = {
            "torch_tokens_per_s": round(tokens[side] / seconds["torch"]),
            f"{engine}_tokens_per_s": round(tokens[side] / seconds[engine]),
            "ratio_to_torch": round(seconds["torch"] / seconds[engine], 3),
            "same_shapes": same_shape,
            "max_abs_diff": max(float(np.abs(a - b).max()) for a, b in pairs) if same_shape else None,
        }
    return row


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--dense", default=None, help="dense model folder (default: real-size random LFM2.5)")
    parser.add_argument("--colbert", default=None, help="ColBERT model folder (default: real-size random LFM2.5)")
    parser.add_argument("--texts", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--start-timeout", type=float, default=300)
    for engine, kind in SERVER_ARGS:
        parser.add_argument(f"--{engine}-{kind}-args", default=SERVER_ARGS[engine, kind])
    parser.add_argument("--engines", nargs="+", default=["vllm", "sglang"], help="'serve': a CPU rehearsal")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    documents = (MIXED * (args.texts // len(MIXED) + 1))[: args.texts]
    queries = [text[:60] for text in documents[: max(1, args.texts // 4)]]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict = {"load_before": load_average(), "rows": [], "skipped": []}
    engines = [e for e in args.engines if e == "serve" or importlib.util.find_spec(e) is not None]
    for engine in sorted(set(args.engines) - set(engines)):
        result["skipped"].append(f"{engine}: not installed")
        print(f"{engine}: not installed, skipped")
    folders = {}
    if engines:
        folders["dense"] = args.dense or model_path("lfm25-random")
        folders["colbert"] = args.colbert or model_path("lfm25-colbert-random")
    for engine in engines:
        for kind in ("dense", "colbert"):
            extra = getattr(args, f"{engine}_{kind}_args".replace("-", "_"), None)
            if extra is None:
                result["skipped"].append(f"{engine} {kind}: no token-embedding route")
                continue
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            cmd = command(engine, folders[kind], port, args.dtype, extra)
            log = out / f"{engine}-{kind}.log"
            print("starting:", shlex.join(cmd), flush=True)
            process = started(cmd, url, log, args.start_timeout)
            if process is None:
                tail = log.read_text(errors="replace").splitlines()[-15:]
                result["skipped"].append(f"{engine} {kind}: did not start: {' | '.join(tail)[-1500:]}")
                print(f"{engine} {kind}: did not start (log: {log})")
                continue
            try:
                if kind == "dense":
                    local = DenseEncoder(folders[kind], device=args.device, dtype=args.dtype)
                    remote = DenseEncoder(folders[kind], base_url=url)
                else:
                    local = ColBERTEncoder(folders[kind], device=args.device, dtype=args.dtype)
                    remote = ColBERTEncoder(folders[kind], base_url=url, api="vllm")
                row = compare(engine, kind, local, remote, documents, queries, args.repeats)
            except Exception as exc:  # a wrong answer is a result here: record it and go on
                row = {"engine": engine, "kind": kind, "error": f"{type(exc).__name__}: {exc}"[:1500]}
            finally:
                stop(process)
            print(json.dumps(row), flush=True)
            result["rows"].append(row)
    result["load_after"] = load_average()
    write_results(result, out, "servers")
    return 0


if __name__ == "__main__":
    sys.exit(main())

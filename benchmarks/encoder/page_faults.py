"""Page faults and tokens/s of CPU encoding with malloc reusing freed memory and with glibc's defaults.

Each configuration runs in its own process (the malloc setting is process-wide and applied once),
alternating ``--rounds`` times: ``LFM_REUSE_FREED_MEMORY=0`` (glibc's defaults) against the
default (mmap threshold 32 MiB, trim threshold 512 MiB; ``lfm_retrieval.runtimes.allocator``).
Per process: one warm-up call, then ``--passes`` passes over the same texts of the catalog's
length mix; it reports the best pass's tokens/s and the minor page faults per pass.

    python benchmarks/encoder/page_faults.py --checkpoint DIR [--texts 96] [--rounds 2] [--precision int8 fp32]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parents[1]))  # benchmarks/: the shared common.py
from common import load_average

CHILD = """
import json, resource, sys, time
sys.path.insert(0, sys.argv[4])
from run import make_texts
from lfm_retrieval import DenseEncoder

encoder = DenseEncoder(sys.argv[1], device="cpu", quantize="int8" if sys.argv[2] == "int8" else None)
texts = make_texts(int(sys.argv[3]), encoder.model.tokenizer)
tokens = sum(len(ids) for ids in encoder.model.tokenizer(["document: " + t for t in texts])["input_ids"])
encoder.encode_documents(texts[:8])
seconds, faults = [], []
for _ in range(int(sys.argv[5])):
    before, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
    encoder.encode_documents(texts)
    seconds.append(time.perf_counter() - start)
    faults.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(json.dumps({"tokens": tokens, "seconds": seconds, "faults": faults}))
"""


def run_child(checkpoint: Path, precision: str, texts: int, passes: int, reuse: bool) -> dict:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "LFM_REUSE_FREED_MEMORY": "1" if reuse else "0"}
    args = [str(checkpoint), precision, str(texts), str(Path(__file__).parent), str(passes)]
    done = subprocess.run([sys.executable, "-c", CHILD, *args], env=env, capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", help="real-size random checkpoint folder (built if absent)")
    parser.add_argument("--texts", type=int, default=96)
    parser.add_argument("--passes", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--precision", nargs="+", default=["int8", "fp32"], choices=["int8", "fp32"])
    args = parser.parse_args()
    load_before = load_average()
    with tempfile.TemporaryDirectory() as workdir:
        checkpoint = Path(args.checkpoint or Path(workdir) / "lfm25-embedding-random")
        if not (checkpoint / "modules.json").exists():
            from lfm_retrieval.testing import build_dense_checkpoint, lfm25_config

            build_dense_checkpoint(checkpoint, config=lfm25_config())
        results: dict[str, list[dict]] = {}
        for _ in range(args.rounds):
            for precision in args.precision:
                for reuse in (False, True):
                    name = f"{precision} {'reused' if reuse else 'glibc defaults'}"
                    results.setdefault(name, []).append(
                        run_child(checkpoint, precision, args.texts, args.passes, reuse)
                    )
                    last = results[name][-1]
                    print(f"  {name}: {last['tokens'] / min(last['seconds']):.0f} tok/s, faults {last['faults']}")
    print(f"load average before {load_before}, after {load_average()}")
    print(f"{'config':<22} {'best tok/s':>10} {'per process':>24} {'faults per pass':>16}")
    for name, runs in results.items():
        rates = [r["tokens"] / min(r["seconds"]) for r in runs]
        faults = int(np.median([f for r in runs for f in r["faults"]]))
        print(f"{name:<22} {max(rates):>10.0f} {[round(x) for x in rates]!s:>24} {faults:>16,}")


if __name__ == "__main__":
    main()

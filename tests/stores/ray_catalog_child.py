"""A catalog job on the Ray engine that SIGKILLs its own driver after the N-th written batch (0: never).

python tests/stores/ray_catalog_child.py MODEL STORE_URI CATALOG N     (RAY_ADDRESS: the cluster)
"""

from __future__ import annotations

import json
import os
import signal
import sys

from lfm_retrieval import DenseEncoder
from lfm_retrieval.catalog import CatalogJob
from lfm_retrieval.catalog.engines import RayEngine, ray_stages
from lfm_retrieval.stores import open_store


def main() -> None:
    model, uri, catalog, kill_after = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    if kill_after:
        original, calls = ray_stages.Apply.__call__, {"n": 0}

        def counting(self, stores, table):  # runs in this driver: the store is written from here
            result = original(self, stores, table)
            calls["n"] += 1
            if calls["n"] == kill_after:
                os.kill(os.getpid(), signal.SIGKILL)
            return result

        ray_stages.Apply.__call__ = counting
    engine = RayEngine(address=os.environ["RAY_ADDRESS"], workers=2, driver_writes=True)
    job = CatalogJob(DenseEncoder(model, device="cpu"), open_store(uri), text="{title}. {description}",
                     key="{sku}/{locale}", payload=["sku"], batch_size=16, progress=False, engine=engine)  # fmt: skip
    print(json.dumps(job.run(catalog).as_dict()))


if __name__ == "__main__":
    main()

"""Runs the catalog job in a child process and SIGKILLs it at a chosen point (used by the kill tests).

    python tests/catalog_child.py MODEL STORE_URI CATALOG KILL_AT

KILL_AT is ``none``, ``encode:N`` (inside the N-th encoding call), ``between:N`` (after the
N-th batch is written) or ``write:N`` (halfway through writing the N-th batch).
"""

from __future__ import annotations

import os
import signal
import sys

from lfm_retrieval import DenseEncoder
from lfm_retrieval.catalog import CatalogJob
from lfm_retrieval.stores import open_store

TEXT, KEY, PAYLOAD = "{title}. {description}", "{sku}/{locale}", ["sku", "price"]


def die() -> None:
    sys.stdout.flush()
    os.kill(os.getpid(), signal.SIGKILL)


def main() -> None:
    model, uri, catalog, kill_at = sys.argv[1:5]
    encoder = DenseEncoder(model, device="cpu")
    store = open_store(uri)
    point, _, nth = kill_at.partition(":")
    calls = {"n": 0}

    def counting(original, before: bool, halfway: bool = False):
        def wrapper(arg, *args, **kwargs):
            calls["n"] += 1
            if calls["n"] == int(nth):
                if halfway:
                    original(arg[: len(arg) // 2], *args, **kwargs)
                    die()
                if before:
                    original(arg, *args, **kwargs)  # the work is done but never returned
                    die()
            result = original(arg, *args, **kwargs)
            if calls["n"] == int(nth) and not before:
                die()
            return result

        return wrapper

    if point == "encode":
        encoder.encode_documents = counting(encoder.encode_documents, before=True)
    elif point == "between":
        store.upsert = counting(store.upsert, before=False)
    elif point == "write":
        store._upsert = counting(store._upsert, before=True, halfway=True)
    job = CatalogJob(encoder, store, text=TEXT, key=KEY, payload=PAYLOAD, batch_size=10, progress=False)
    summary = job.run(catalog)
    store.close()
    print(f"encoded={summary.encoded} written={summary.written} unchanged={summary.unchanged}")


if __name__ == "__main__":
    main()

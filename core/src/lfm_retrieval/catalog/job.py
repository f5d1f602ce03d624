"""The catalog indexing job: incremental, resumable, with progress, on a local or a Ray engine.

A run compares each record's fingerprint (see :mod:`lfm_retrieval.catalog.prepare`) with
the one stored, encodes only records whose text part changed, rewrites only the payload
of records whose payload alone changed, and skips the rest. Vector and fingerprint are
written together, so a run killed at any point (SIGKILL included) leaves only complete
records behind, and the next run simply finishes the work: nothing lost, duplicated (ids
are stable) or encoded twice. The stored fingerprints are the checkpoint, whatever the engine.

One pass can fill a dense store, a ColBERT (multivector) store, a hybrid store (dense +
ColBERT vectors in one collection), or a dense and a ColBERT store together; each store
keeps its own fingerprints, so a run killed between two stores' writes also resumes.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

from lfm_retrieval.catalog.engines.local import LocalEngine
from lfm_retrieval.catalog.plan import Engine, OnError, Plan
from lfm_retrieval.catalog.prepare import AnyEncoder, Preparer
from lfm_retrieval.catalog.sources import Source
from lfm_retrieval.catalog.summary import Summary
from lfm_retrieval.catalog.targets import resolve
from lfm_retrieval.encoders import ColBERTEncoder
from lfm_retrieval.stores import Store

logger = logging.getLogger("lfm_retrieval.catalog")


def _local() -> Engine:
    return LocalEngine()


@dataclass
class CatalogJob:
    """Index a catalog into a store with an encoder (or two encoders, in one pass).

    * dense: ``CatalogJob(dense_encoder, dense_store, ...)``;
    * ColBERT: ``CatalogJob(colbert_encoder, multivector_store, ...)``;
    * both in one collection: ``CatalogJob(dense_encoder, hybrid_store, colbert=colbert_encoder, ...)``;
    * both in two stores: ``CatalogJob(dense_encoder, dense_store, colbert=colbert_encoder,
      colbert_store=multivector_store, ...)``.

    ``text`` renders the text to embed (e.g. ``"{title}. {brand}. {description}"``),
    ``key`` the record's key (e.g. ``"{sku}/{locale}"``), ``payload`` lists the fields
    copied to the store (dotted paths allowed; stored under their full path). With
    ``sync=True`` records that left the catalog are deleted (only after a complete read).
    Bad records are reported with their position and skipped, or stop the run
    (``on_error="fail"``). ``engine`` is where it runs: ``LocalEngine()`` (the default:
    this process, encoding the next batch while the last one is written) or
    ``RayEngine(...)`` (a Ray cluster; ``pip install lfm-retrieval[ray]``).
    """

    encoder: AnyEncoder
    store: Store
    text: str
    key: str
    payload: Sequence[str] = ()
    sync: bool = False
    on_error: OnError = "skip"
    batch_size: int = 256
    progress: bool | None = None  # None: a bar on a terminal, log lines otherwise
    colbert: ColBERTEncoder | None = None
    colbert_store: Store | None = None
    engine: Engine = field(default_factory=_local)

    def plan(self) -> Plan:
        """The checked job: its encoders, its targets (stores, checked for kind), its record preparer, its options."""
        if self.on_error not in ("skip", "fail"):
            raise ValueError(f"on_error must be 'skip' or 'fail', not {self.on_error!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, not {self.batch_size!r}")
        encoders, targets = resolve(self.encoder, self.store, self.colbert, self.colbert_store)
        preparer = Preparer.of(self.text, self.key, self.payload)
        return Plan(encoders, targets, preparer, self.sync, self.on_error, self.batch_size, self.progress)

    def run(self, source: Source) -> Summary:
        """Index ``source`` (a .jsonl / .csv / .parquet path, or an iterable of dicts); returns the summary."""
        summary = self.engine.run(self.plan(), source)
        logger.info(
            "catalog run finished: %s", json.dumps(summary.as_dict() | {"bad_records": len(summary.bad_records)})
        )
        return summary

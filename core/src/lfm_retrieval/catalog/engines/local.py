"""The local engine: the job in this process, encoding the next batch while the last one is written."""

from __future__ import annotations

import logging
import time
from contextlib import ExitStack
from dataclasses import dataclass
from typing import Any

from lfm_retrieval.catalog.engines.writer import Writer
from lfm_retrieval.catalog.plan import Plan, delete_unread
from lfm_retrieval.catalog.prepare import decide, duplicate, fingerprint
from lfm_retrieval.catalog.progress import Progress
from lfm_retrieval.catalog.sources import Source, count_rows, read_source
from lfm_retrieval.catalog.summary import Summary
from lfm_retrieval.catalog.targets import build_records, vector_field, write
from lfm_retrieval.errors import BadRecordError

logger = logging.getLogger("lfm_retrieval.catalog")


@dataclass
class LocalEngine:
    """Read, prepare, encode and write in this process.

    With ``overlap=True`` (the default) writes run on a writer thread: batch *n* is
    written while batch *n + 1* is encoded (one batch in flight, so memory stays bounded).
    Every write is a whole record (vector + fingerprint), so a kill at any point leaves a
    store the next run finishes. ``overlap=False`` is the serial job (the benchmark's baseline).
    """

    overlap: bool = True

    def run(self, job: Plan, source: Source) -> Summary:
        encoders, targets, preparer = job.encoders, job.targets, job.preparer
        started = time.monotonic()
        summary = Summary()
        stored: list[dict[str, str]] = []
        for target in targets:
            target.store.ensure_collection(target.spec(encoders))
            stored.append(target.store.fingerprints())
        truncated_before = sum(encoder.stats.truncated for encoder in encoders)
        seen: set[str] = set()
        fields = [vector_field(encoder) for encoder in encoders]
        pending: list[list[tuple[str, str, dict[str, Any], str]]] = [[] for _ in targets]
        payload_only: list[list[tuple[str, dict[str, Any], str]]] = [[] for _ in targets]

        def flush(final: bool) -> None:
            encoded: set[str] = set()
            for t, target in enumerate(targets):
                items, updates = pending[t], payload_only[t]
                full = final or len(items) >= job.batch_size or len(updates) >= job.batch_size
                if not full or not (items or updates):
                    continue
                texts = [text for _, text, _, _ in items]
                vectors = {e: encoders[e].encode_documents(texts) for e in target.encoders} if items else {}
                records = build_records(target, fields, [(k, p, f) for k, _, p, f in items], vectors)
                encoded.update(key for key, _, _, _ in items)
                writer.submit(lambda s=target.store, r=records, u=updates: write(s, r, u), count)
                pending[t], payload_only[t] = [], []
            summary.encoded += len(encoded)

        def count(result: tuple[int, int]) -> None:
            summary.written += result[0]
            summary.payload_updated += result[1]

        with ExitStack() as stack:
            bar = stack.enter_context(Progress(total=count_rows(source), enabled=job.progress, unit="records"))
            for target in targets:
                stack.enter_context(target.store.bulk_load())
            writer = stack.enter_context(Writer(overlap=self.overlap))
            for row in read_source(source):
                summary.read += 1
                bar.advance(1, summary)
                try:
                    record = preparer.prepare(row)
                    if record.key in seen:
                        raise duplicate(row.position, record.key)
                    seen.add(record.key)
                except BadRecordError as exc:
                    summary.failed += 1
                    summary.bad_records.append((exc.position, exc.problem))
                    logger.warning("skipped bad record %s: %s", exc.position, exc.problem)
                    if job.on_error == "fail":
                        raise
                    continue
                changed = False
                for t, target in enumerate(targets):
                    new = fingerprint(target.identity, record.text, record.payload)
                    action = decide(stored[t].get(record.key), new)
                    if action == "encode":
                        pending[t].append((record.key, record.text, record.payload, new))
                    elif action == "payload":
                        payload_only[t].append((record.key, record.payload, new))
                    changed |= action != "unchanged"
                summary.unchanged += not changed
                flush(final=False)
            flush(final=True)
            writer.drain()
            if job.sync:
                summary.deleted = delete_unread(job, seen)
            bar.advance(0, summary)

        summary.truncated = sum(encoder.stats.truncated for encoder in encoders) - truncated_before
        summary.seconds = round(time.monotonic() - started, 3)
        return summary

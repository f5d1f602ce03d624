"""The catalog indexing job: incremental, resumable, with progress.

Every stored record carries a fingerprint: a hash of what was encoded (model, prompt,
text) and a hash of its payload. A run reads the store's fingerprints first, then
encodes only records whose text part changed, rewrites only the payload of records
whose payload alone changed, and skips the rest. Vector and fingerprint are written
together, so a run killed at any point (SIGKILL included) leaves only complete records
behind, and the next run simply finishes the work: nothing lost, duplicated (ids are
stable) or encoded twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lfm_retrieval.catalog.progress import Progress
from lfm_retrieval.catalog.sources import SourceRow, read_source
from lfm_retrieval.catalog.template import MISSING, Template, lookup
from lfm_retrieval.encoders import DenseEncoder, Side
from lfm_retrieval.errors import BadRecordError
from lfm_retrieval.stores import CollectionSpec, DenseStore, Record

logger = logging.getLogger("lfm_retrieval.catalog")
OnError = Literal["skip", "fail"]


def fingerprint(encoder: DenseEncoder, text: str, payload: Mapping[str, Any]) -> str:
    """``<text part>.<payload part>``: the text part covers model, document prompt and text."""
    text_part = hashlib.sha256("\0".join((encoder.model_id, encoder.prompts[Side.DOCUMENT], text)).encode()).hexdigest()
    payload_part = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"{text_part[:32]}.{payload_part[:16]}"


@dataclass
class Summary:
    """What a run did."""

    read: int = 0
    unchanged: int = 0
    encoded: int = 0
    written: int = 0
    payload_updated: int = 0
    deleted: int = 0
    truncated: int = 0
    failed: int = 0
    seconds: float = 0.0
    bad_records: list[tuple[str, str]] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k != "bad_records"} | {
            "bad_records": [{"position": p, "problem": m} for p, m in self.bad_records[:100]]
        }


@dataclass
class CatalogJob:
    """Index a catalog into a dense store with an encoder.

    ``text`` renders the text to embed (e.g. ``"{title}. {brand}. {description}"``),
    ``key`` the record's key (e.g. ``"{sku}/{locale}"``), ``payload`` lists the fields
    copied to the store (dotted paths allowed; stored under their full path). With
    ``sync=True`` records that left the catalog are deleted (only after a complete read).
    Bad records are reported with their position and skipped, or stop the run
    (``on_error="fail"``) before anything else is written.
    """

    encoder: DenseEncoder
    store: DenseStore
    text: str
    key: str
    payload: Sequence[str] = ()
    sync: bool = False
    on_error: OnError = "skip"
    batch_size: int = 256
    progress: bool | None = None  # None: a bar on a terminal, log lines otherwise

    def run(self, source: str | Path | Iterable[Mapping[str, Any]]) -> Summary:
        if self.on_error not in ("skip", "fail"):
            raise ValueError(f"on_error must be 'skip' or 'fail', not {self.on_error!r}")
        text_template, key_template = Template(self.text), Template(self.key)
        started = time.monotonic()
        summary = Summary()
        self.store.ensure_collection(CollectionSpec.for_encoder(self.encoder))
        stored = self.store.fingerprints()
        truncated_before = self.encoder.stats.truncated
        seen: set[str] = set()
        pending: list[tuple[str, str, dict[str, Any], str]] = []  # key, text, payload, fingerprint
        payload_only: list[tuple[str, dict[str, Any], str]] = []
        total = _count_rows(source)

        with Progress(total=total, enabled=self.progress, unit="records") as bar, self.store.bulk_load():
            for row in read_source(source):
                summary.read += 1
                bar.advance(1, summary)
                try:
                    key, text, payload = self._prepare(row, key_template, text_template, seen)
                except BadRecordError as exc:
                    summary.failed += 1
                    summary.bad_records.append((exc.position, exc.problem))
                    logger.warning("skipped bad record %s: %s", exc.position, exc.problem)
                    if self.on_error == "fail":
                        raise
                    continue
                new = fingerprint(self.encoder, text, payload)
                old = stored.get(key)
                if old == new:
                    summary.unchanged += 1
                elif old is not None and old.split(".")[0] == new.split(".")[0]:
                    payload_only.append((key, payload, new))
                else:
                    pending.append((key, text, payload, new))
                if len(pending) >= self.batch_size:
                    self._write(pending, summary)
                    pending = []
                if len(payload_only) >= self.batch_size:
                    summary.payload_updated += self.store.update_payloads(payload_only)
                    payload_only = []
            if pending:
                self._write(pending, summary)
            if payload_only:
                summary.payload_updated += self.store.update_payloads(payload_only)
            if self.sync:
                gone = [key for key in stored if key not in seen]
                self.store.delete(gone)
                summary.deleted = len(gone)
            bar.advance(0, summary)

        summary.truncated = self.encoder.stats.truncated - truncated_before
        summary.seconds = round(time.monotonic() - started, 3)
        logger.info(
            "catalog run finished: %s", json.dumps(summary.as_dict() | {"bad_records": len(summary.bad_records)})
        )
        return summary

    def _prepare(
        self, row: SourceRow, key_template: Template, text_template: Template, seen: set[str]
    ) -> tuple[str, str, dict[str, Any]]:
        if row.error:
            raise BadRecordError(row.position, row.error)
        key = key_template.render(row.fields, row.position)
        if key in seen:
            raise BadRecordError(row.position, f"duplicate key {key!r} (an earlier record has it)")
        seen.add(key)
        text = text_template.render(row.fields, row.position)
        payload = {}
        for name in self.payload:
            value = lookup(row.fields, name)
            if value is not MISSING and value is not None:
                payload[name] = value
        return key, text, payload

    def _write(self, pending: list[tuple[str, str, dict[str, Any], str]], summary: Summary) -> None:
        vectors = self.encoder.encode_documents([text for _, text, _, _ in pending])
        summary.encoded += len(pending)
        records = [
            Record(key, vector, payload, fingerprint=fp)
            for (key, _, payload, fp), vector in zip(pending, vectors, strict=True)
        ]
        summary.written += self.store.upsert(records, batch_size=len(records))


def _count_rows(source: Any) -> int | None:
    """Records in a file, for the progress bar's ETA (None for iterables)."""
    if isinstance(source, (str, Path)) and Path(source).is_file():
        path = Path(source)
        if path.suffix.lower() == ".parquet":
            import pyarrow.parquet as pq

            return pq.ParquetFile(path).metadata.num_rows
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return lines - 1 if path.suffix.lower() == ".csv" else lines
    return None

"""The catalog indexing job: incremental, resumable, with progress.

Every stored record carries a fingerprint: a hash of what was encoded (model, prompt,
text) and a hash of its payload. A run reads the store's fingerprints first, then
encodes only records whose text part changed, rewrites only the payload of records
whose payload alone changed, and skips the rest. Vector and fingerprint are written
together, so a run killed at any point (SIGKILL included) leaves only complete records
behind, and the next run simply finishes the work: nothing lost, duplicated (ids are
stable) or encoded twice.

One pass can fill a dense store, a ColBERT (multivector) store, a hybrid store (dense +
ColBERT vectors in one collection), or a dense and a ColBERT store together; each store
keeps its own fingerprints, so a run killed between two stores' writes also resumes.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Mapping, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from lfm_retrieval.catalog.progress import Progress
from lfm_retrieval.catalog.sources import SourceRow, read_source
from lfm_retrieval.catalog.template import MISSING, Template, lookup
from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder, Side
from lfm_retrieval.errors import BadRecordError
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, Store

logger = logging.getLogger("lfm_retrieval.catalog")
OnError = Literal["skip", "fail"]


AnyEncoder = DenseEncoder | ColBERTEncoder


def _document_side(encoder: AnyEncoder) -> str:
    """What, besides the text and model, decides a document vector: the prompt or the ColBERT prefix."""
    if isinstance(encoder, DenseEncoder):
        return encoder.prompts[Side.DOCUMENT]
    return f"colbert|{encoder.document_prefix}|{encoder.document_length}"


def fingerprint(encoders: AnyEncoder | Sequence[AnyEncoder], text: str, payload: Mapping[str, Any]) -> str:
    """``<text part>.<payload part>``: the text part covers each model, its document prompt or prefix,
    and the text."""
    encoders = [encoders] if isinstance(encoders, (DenseEncoder, ColBERTEncoder)) else list(encoders)
    parts = [part for encoder in encoders for part in (encoder.model_id, _document_side(encoder))]
    text_part = hashlib.sha256("\0".join([*parts, text]).encode()).hexdigest()
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
class _Target:
    """One store and the encoders whose vectors it holds, with what the run still has to write."""

    store: Store
    encoders: list[AnyEncoder]
    stored: dict[str, str] = field(default_factory=dict)
    pending: list[tuple[str, str, dict[str, Any], str]] = field(default_factory=list)  # key, text, payload, fp
    payload_only: list[tuple[str, dict[str, Any], str]] = field(default_factory=list)

    def spec(self) -> CollectionSpec | HybridSpec:
        if len(self.encoders) == 2:
            return HybridSpec.for_encoders(*self.encoders)
        return CollectionSpec.for_encoder(self.encoders[0])

    def records(self, pending: list[tuple[str, str, dict[str, Any], str]]) -> list[Record]:
        texts = [text for _, text, _, _ in pending]
        encoded = [encoder.encode_documents(texts) for encoder in self.encoders]
        records = []
        for i, (key, _, payload, fp) in enumerate(pending):
            vectors: dict[str, Any] = {}
            for encoder, output in zip(self.encoders, encoded, strict=True):
                vectors["token_vectors" if isinstance(encoder, ColBERTEncoder) else "vector"] = output[i]
            records.append(Record(key, payload=payload, fingerprint=fp, **vectors))
        return records


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
    (``on_error="fail"``) before anything else is written.
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

    def _targets(self) -> list[_Target]:
        if self.colbert is None:
            if self.colbert_store is not None:
                raise ValueError("colbert_store needs a colbert encoder")
            wanted = "multivector" if isinstance(self.encoder, ColBERTEncoder) else "dense"
            targets = [_Target(self.store, [self.encoder])]
        elif not isinstance(self.encoder, DenseEncoder):
            raise ValueError("with colbert=, encoder must be the dense encoder")
        elif self.colbert_store is None:
            wanted = "hybrid"
            targets = [_Target(self.store, [self.encoder, self.colbert])]
        else:
            wanted = "dense"
            targets = [_Target(self.store, [self.encoder]), _Target(self.colbert_store, [self.colbert])]
            if self.colbert_store.kind != "multivector":
                raise ValueError(f"colbert_store must be a multivector store, not a {self.colbert_store.kind} one")
        if self.store.kind != wanted:
            raise ValueError(f"these encoders need a {wanted} store, not a {self.store.kind} one ({self.store.uri!r})")
        return targets

    @property
    def _encoders(self) -> list[AnyEncoder]:
        return [self.encoder] if self.colbert is None else [self.encoder, self.colbert]

    def run(self, source: str | Path | Iterable[Mapping[str, Any]]) -> Summary:
        if self.on_error not in ("skip", "fail"):
            raise ValueError(f"on_error must be 'skip' or 'fail', not {self.on_error!r}")
        text_template, key_template = Template(self.text), Template(self.key)
        targets = self._targets()
        started = time.monotonic()
        summary = Summary()
        for target in targets:
            target.store.ensure_collection(target.spec())
            target.stored = target.store.fingerprints()
        truncated_before = sum(encoder.stats.truncated for encoder in self._encoders)
        seen: set[str] = set()
        total = _count_rows(source)

        with ExitStack() as stack:
            bar = stack.enter_context(Progress(total=total, enabled=self.progress, unit="records"))
            for target in targets:
                stack.enter_context(target.store.bulk_load())
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
                changed = False
                for target in targets:
                    new = fingerprint(target.encoders, text, payload)
                    old = target.stored.get(key)
                    if old == new:
                        continue
                    changed = True
                    if old is not None and old.split(".")[0] == new.split(".")[0]:
                        target.payload_only.append((key, payload, new))
                    else:
                        target.pending.append((key, text, payload, new))
                summary.unchanged += not changed
                self._flush(targets, summary, final=False)
            self._flush(targets, summary, final=True)
            if self.sync:
                gone: set[str] = set()
                for target in targets:
                    leaving = [key for key in target.stored if key not in seen]
                    target.store.delete(leaving)
                    gone.update(leaving)
                summary.deleted = len(gone)
            bar.advance(0, summary)

        summary.truncated = sum(encoder.stats.truncated for encoder in self._encoders) - truncated_before
        summary.seconds = round(time.monotonic() - started, 3)
        logger.info(
            "catalog run finished: %s", json.dumps(summary.as_dict() | {"bad_records": len(summary.bad_records)})
        )
        return summary

    def _flush(self, targets: list[_Target], summary: Summary, *, final: bool) -> None:
        """Write each target's full batches (all that is left when ``final``)."""
        encoded: set[str] = set()
        for target in targets:
            if target.pending and (final or len(target.pending) >= self.batch_size):
                records = target.records(target.pending)
                encoded.update(key for key, _, _, _ in target.pending)
                summary.written += target.store.upsert(records, batch_size=len(records))
                target.pending = []
            if target.payload_only and (final or len(target.payload_only) >= self.batch_size):
                summary.payload_updated += target.store.update_payloads(target.payload_only)
                target.payload_only = []
        summary.encoded += len(encoded)

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

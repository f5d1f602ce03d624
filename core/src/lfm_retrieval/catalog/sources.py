"""Reading catalog records from JSONL, CSV or Parquet files, or any iterable of dicts."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class SourceRow:
    """One input record and where it came from (``file:line`` or ``#index``), or why it is unreadable."""

    position: str
    fields: Mapping[str, Any]
    error: str | None = None


def read_source(source: str | Path | Iterable[Mapping[str, Any]]) -> Iterator[SourceRow]:
    """Yield the records of a ``.jsonl``/``.ndjson``, ``.csv`` or ``.parquet`` file, or of an iterable of dicts.

    A line or item that is not a JSON object / dict comes as a row with ``error`` set, so
    the caller can report it with its position and go on.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"catalog file {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix in (".jsonl", ".ndjson", ".json"):
            yield from _jsonl(path)
        elif suffix == ".csv":
            yield from _csv(path)
        elif suffix == ".parquet":
            yield from _parquet(path)
        else:
            raise ValueError(f"catalog file {str(path)!r}: unknown format {suffix!r} (use .jsonl, .csv or .parquet)")
        return
    for index, item in enumerate(source):
        if isinstance(item, Mapping):
            yield SourceRow(f"#{index}", item)
        else:
            yield SourceRow(f"#{index}", {}, f"is {type(item).__name__}, not a mapping")


def _jsonl(path: Path) -> Iterator[SourceRow]:
    with path.open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if not line.strip():
                continue
            position = f"{path.name}:{number}"
            try:
                item = json.loads(line)
            except json.JSONDecodeError as exc:
                yield _bad(position, f"is not valid JSON ({exc.msg})")
                continue
            if not isinstance(item, dict):
                yield _bad(position, f"is a JSON {type(item).__name__}, not an object")
                continue
            yield SourceRow(position, item)


def _csv(path: Path) -> Iterator[SourceRow]:
    with path.open(encoding="utf-8", newline="") as handle:
        reader = csv.DictReader(handle)
        for row in reader:
            yield SourceRow(f"{path.name}:{reader.line_num}", row)


def _parquet(path: Path) -> Iterator[SourceRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError as exc:  # pragma: no cover - pyarrow ships with both stacks
        raise ImportError("reading Parquet needs pyarrow: pip install pyarrow") from exc
    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=4096):
        for item in batch.to_pylist():
            yield SourceRow(f"{path.name}#{index}", item)
            index += 1


def _bad(position: str, problem: str) -> SourceRow:
    return SourceRow(position, {}, problem)

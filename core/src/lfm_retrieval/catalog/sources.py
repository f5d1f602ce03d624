"""Reading catalog records from JSONL, CSV or Parquet files, or any iterable of dicts."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

import pyarrow.parquet as pq


@dataclass(frozen=True)
class SourceRow:
    """One input record and where it came from (``file:line`` or ``#index``), or why it is unreadable."""

    position: str
    fields: Mapping[str, Any]
    error: str | None = None


FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


#: What a job reads: a file path or URI (JSONL, CSV, Parquet), or an iterable of records.
Source = str | Path | Iterable[Mapping[str, Any]]


def file_format(name: str) -> str:
    """``jsonl``, ``csv`` or ``parquet`` from a file name; ValueError for another suffix."""
    suffix = PurePosixPath(name).suffix.lower()
    if suffix not in FORMATS:
        raise ValueError(f"catalog file {name!r}: unknown format {suffix!r} (use .jsonl, .csv or .parquet)")
    return FORMATS[suffix]


def read_source(source: str | Path | Iterable[Mapping[str, Any]]) -> Iterator[SourceRow]:
    """Yield the records of a ``.jsonl``/``.ndjson``, ``.csv`` or ``.parquet`` file, or of an iterable of dicts.

    A line or item that is not a JSON object / dict comes as a row with ``error`` set, so
    the caller can report it with its position and go on.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f"catalog file {str(path)!r} does not exist")
        kind = file_format(path.name)
        with path.open("rb") as handle:
            yield from read_file(handle, path.name, kind)
        return
    for index, item in enumerate(source):
        yield item_row(index, item)


def item_row(index: int, item: Any) -> SourceRow:
    """The row of the ``index``-th item of an iterable source."""
    if isinstance(item, Mapping):
        return SourceRow(f"#{index}", item)
    return SourceRow(f"#{index}", {}, f"is {type(item).__name__}, not a mapping")


def read_file(handle: BinaryIO, name: str, kind: str, row_groups: list[int] | None = None) -> Iterator[SourceRow]:
    """The rows of an open binary file (local or from a pyarrow filesystem) of format ``kind``.

    ``row_groups`` reads only those row groups of a Parquet file (positions stay the file's)."""
    if kind == "parquet":
        yield from _parquet(handle, name, row_groups)
        return
    text = io.TextIOWrapper(handle, encoding="utf-8", newline="" if kind == "csv" else None)
    yield from (_csv(text, name) if kind == "csv" else _jsonl(text, name))


def _jsonl(lines: Iterable[str], name: str) -> Iterator[SourceRow]:
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        position = f"{name}:{number}"
        try:
            item = json.loads(line)
        except json.JSONDecodeError as exc:
            yield _bad(position, f"is not valid JSON ({exc.msg})")
            continue
        if not isinstance(item, dict):
            yield _bad(position, f"is a JSON {type(item).__name__}, not an object")
            continue
        yield SourceRow(position, item)


def _csv(handle: io.TextIOBase, name: str) -> Iterator[SourceRow]:
    reader = csv.DictReader(handle)
    for row in reader:
        yield SourceRow(f"{name}:{reader.line_num}", row)


def _parquet(handle: BinaryIO, name: str, row_groups: list[int] | None) -> Iterator[SourceRow]:
    parquet = pq.ParquetFile(handle)
    starts = [0]
    for group in range(parquet.num_row_groups):
        starts.append(starts[-1] + parquet.metadata.row_group(group).num_rows)
    for group in range(parquet.num_row_groups) if row_groups is None else row_groups:
        index = starts[group]
        for batch in parquet.iter_batches(batch_size=4096, row_groups=[group]):
            for item in batch.to_pylist():
                yield SourceRow(f"{name}#{index}", item)
                index += 1


def _bad(position: str, problem: str) -> SourceRow:
    return SourceRow(position, {}, problem)


def count_rows(source: Any) -> int | None:
    """Records in a local file, for the progress bar's ETA (None for iterables and remote files)."""
    if isinstance(source, (str, Path)) and Path(source).is_file():
        path = Path(source)
        if path.suffix.lower() == ".parquet":
            return pq.ParquetFile(path).metadata.num_rows
        with path.open("rb") as handle:
            lines = sum(1 for line in handle if line.strip())
        return lines - 1 if path.suffix.lower() == ".csv" else lines
    return None

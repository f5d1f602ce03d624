"""A small multilingual e-commerce sample catalog, queries and relevance judgments, written for this project (CC0)."""

from pathlib import Path

_HERE = Path(__file__).parent

SAMPLE_CATALOG = _HERE / "sample_catalog.jsonl"
SAMPLE_QUERIES = _HERE / "sample_queries.jsonl"
SAMPLE_QRELS = _HERE / "sample_qrels.tsv"

__all__ = ["SAMPLE_CATALOG", "SAMPLE_QRELS", "SAMPLE_QUERIES"]

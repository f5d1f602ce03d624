"""Ranking quality against relevance judgments: nDCG@k and recall@k."""

from __future__ import annotations

import csv
import json
import math
from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path


def ndcg_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Normalised discounted cumulative gain of one ranking (graded relevance, log2 discount)."""
    gains = [relevance.get(key, 0) for key in ranked[:k]]
    dcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(gains))
    ideal = sorted(relevance.values(), reverse=True)[:k]
    idcg = sum((2**g - 1) / math.log2(i + 2) for i, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at_k(ranked: Sequence[str], relevance: Mapping[str, int], k: int) -> float:
    """Share of the relevant keys (relevance > 0) found in the top k."""
    relevant = {key for key, grade in relevance.items() if grade > 0}
    return len(relevant & set(ranked[:k])) / len(relevant) if relevant else 0.0


def load_queries(path: str | Path) -> dict[str, str]:
    """``{"id": ..., "text": ...}`` per line of a JSONL file, as {id: text}."""
    queries = {}
    with Path(path).open(encoding="utf-8") as lines:
        for number, line in enumerate(lines, 1):
            if line.strip():
                item = json.loads(line)
                if not isinstance(item, dict) or "id" not in item or "text" not in item:
                    raise ValueError(f"{path}:{number}: a query line needs 'id' and 'text'")
                queries[str(item["id"])] = item["text"]
    return queries


def load_qrels(path: str | Path) -> dict[str, dict[str, int]]:
    """A TSV with header ``query_id  key  relevance`` as {query_id: {key: relevance}}."""
    qrels: dict[str, dict[str, int]] = defaultdict(dict)
    with Path(path).open(encoding="utf-8", newline="") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels[row["query_id"]][row["key"]] = int(row["relevance"])
    return dict(qrels)

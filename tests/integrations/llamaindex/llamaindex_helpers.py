"""The English half of the sample catalog as LlamaIndex nodes, with the queries whose answers are unambiguous."""

from __future__ import annotations

import csv
import json

from llama_index.core.schema import TextNode

from lfm_retrieval.data import SAMPLE_CATALOG, SAMPLE_QRELS, SAMPLE_QUERIES
from lfm_retrieval.stores import stable_id

# English queries with a clear best product, and the SKUs (any locale) judged relevant
CLEAR_QUERIES = ["q04", "q07", "q11", "q15", "q19", "q21", "q23"]


def catalog_rows(locale: str = "en") -> list[dict]:
    rows = [json.loads(line) for line in SAMPLE_CATALOG.read_text(encoding="utf-8").splitlines() if line.strip()]
    return [row for row in rows if row["locale"] == locale]


def row_text(row: dict) -> str:
    """Title and category: short texts keep the tests fast on a 2-core machine (descriptions are ~4x longer)."""
    return f"{row['title']}. {row['category']}"


def row_key(row: dict) -> str:
    return f"{row['sku']}/{row['locale']}"


def row_payload(row: dict) -> dict:
    return {"text": row_text(row), "sku": row["sku"], "locale": row["locale"], "price": row["price"]}


def catalog_nodes(locale: str = "en") -> list[TextNode]:
    """One node per record: the text is what gets embedded (metadata is kept out of the embedding).

    Node ids are the project's stable ids (uuid5 of the key: Qdrant takes only UUIDs or ints); the
    key is in the metadata."""
    nodes = []
    for row in catalog_rows(locale):
        metadata = {"key": row_key(row), "sku": row["sku"], "locale": row["locale"], "price": row["price"]}
        nodes.append(
            TextNode(
                id_=stable_id(row_key(row)),
                text=row_text(row),
                metadata=metadata,
                excluded_embed_metadata_keys=list(metadata),
            )
        )
    return nodes


def clear_queries() -> dict[str, tuple[str, set[str]]]:
    """query id -> (text, relevant SKUs)."""
    texts = {
        q["id"]: q["text"]
        for q in map(json.loads, SAMPLE_QUERIES.read_text(encoding="utf-8").splitlines())
        if q["id"] in CLEAR_QUERIES
    }
    relevant: dict[str, set[str]] = {qid: set() for qid in texts}
    with SAMPLE_QRELS.open(encoding="utf-8") as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            if row["query_id"] in relevant and int(row["relevance"]) > 0:
                relevant[row["query_id"]].add(row["key"].split("/")[0])
    return {qid: (texts[qid], relevant[qid]) for qid in CLEAR_QUERIES}

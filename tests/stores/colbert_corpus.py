"""What the ColBERT store tests of each engine share: a mixed-length token corpus, recall@10 against
exact MaxSim over every document, a filter that must reach the first stage, and the CLI and ``copy``
round trips on a store URI.

Each helper takes an ``open_kind(kind) -> Store`` factory of the engine under test (a fresh
collection per call); the engine's own module asserts its thresholds.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from lfm_retrieval.cli import app
from lfm_retrieval.data import SAMPLE_CATALOG
from lfm_retrieval.scoring import maxsim_scores
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, Store, copy_collection, open_store
from lfm_retrieval.testing.stores import exact_store
from test_muvera import clustered_corpus

WIDTH = 128  # LFM2.5-ColBERT's token vector width
MULTI_SPEC = CollectionSpec(WIDTH, model="c", kind="multivector")
HYBRID_SPEC = HybridSpec(CollectionSpec(WIDTH, model="d"), MULTI_SPEC)
SPECS = {"multivector": MULTI_SPEC, "hybrid": HYBRID_SPEC}
MUVERA = "multivector (MUVERA, defaults)"

Corpus = tuple[list[Record], list[np.ndarray], list[np.ndarray]]


def unit(x: np.ndarray) -> np.ndarray:
    """``x`` scaled to length 1, as float32."""
    return (x / np.linalg.norm(x)).astype(np.float32)


@functools.cache
def colbert_corpus() -> Corpus:
    """600 documents of 5 to 150 token vectors (128-d, clustered by topic), a dense vector each (the mean
    of its tokens, a stand-in for a dense model that agrees with ColBERT on topics), 30 queries."""
    rng = np.random.default_rng(29)
    docs, queries = clustered_corpus(rng, documents=600, queries=30, width=WIDTH)
    records = [
        Record(f"doc-{i}", unit(d.mean(axis=0)), {"i": i, "half": i % 2}, f"fp{i}", token_vectors=d)
        for i, d in enumerate(docs)
    ]
    return records, docs, queries


def tokens_only(records: list[Record]) -> list[Record]:
    """The records without their dense vectors (what a multivector collection takes)."""
    return [Record(r.key, None, r.payload, r.fingerprint, r.token_vectors) for r in records]


def recall(found: list[list[str]], truth: list[list[str]]) -> float:
    """Mean share of each query's true keys among the found ones."""
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)]))


def recalls_at_10(open_kind: Callable[[str], Store], prefetches: tuple[int, ...]) -> dict[str, float]:
    """Recall@10 against exact MaxSim over the corpus, of a multivector store (key ``MUVERA``) and a
    hybrid one at each prefetch (``hybrid prefetch=P``), and the hybrid's agreement with the exact
    two-stage reference (``hybrid prefetch=P vs the exact two-stage reference``). Asserts that the
    multivector store's scores are exact MaxSim."""
    records, docs, queries = colbert_corpus()
    exact = maxsim_scores(queries, docs)  # cosine spec on unit token vectors: plain MaxSim
    truth = [[f"doc-{i}" for i in np.argsort(-row, kind="stable")[:10]] for row in exact]
    hybrid, multi = open_kind("hybrid"), open_kind("multivector")
    hybrid.ensure_collection(HYBRID_SPEC)
    multi.ensure_collection(MULTI_SPEC)
    assert hybrid.upsert(records) == multi.upsert(tokens_only(records)) == len(records)
    reference = exact_store("hybrid", HYBRID_SPEC, records)
    recalls = {MUVERA: recall([[h.key for h in multi.search(q, 10)] for q in queries], truth)}
    for prefetch in prefetches:
        found = [[h.key for h in hybrid.search(unit(q.mean(axis=0)), q, 10, prefetch=prefetch)] for q in queries]
        expected = [[h.key for h in reference.search(unit(q.mean(axis=0)), q, 10, prefetch=prefetch)] for q in queries]
        recalls[f"hybrid prefetch={prefetch}"] = recall(found, truth)
        recalls[f"hybrid prefetch={prefetch} vs the exact two-stage reference"] = recall(found, expected)
    top = multi.search(queries[0], 3)
    np.testing.assert_allclose([h.score for h in top], np.sort(exact[0])[::-1][:3], rtol=1e-5)
    return recalls


def check_a_filter_reaches_the_first_stage(open_kind: Callable[[str], Store], kind: str) -> None:
    """A filter that excludes the first stage's top 1 still returns the best allowed documents, as the
    exact reference ranks them."""
    records = colbert_corpus()[0][:200]
    records = records if kind == "hybrid" else tokens_only(records)
    store = open_kind(kind)
    store.ensure_collection(SPECS[kind])
    store.upsert(records)
    reference = exact_store(kind, SPECS[kind], records)
    target = records[7]  # payload half=1
    query = (target.token_vectors,) if kind == "multivector" else (target.vector, target.token_vectors)
    options = {"prefetch": 50} if kind == "hybrid" else {}
    assert store.search(*query, 1, **options)[0].key == target.key
    options = {"prefetch": 200} if kind == "hybrid" else {}
    hits = store.search(*query, 5, {"half": 0}, **options)
    expected = reference.search(*query, 5, {"half": 0}, **options)
    assert [h.key for h in hits] == [h.key for h in expected] and all(h.payload["half"] == 0 for h in hits)


def check_cli_index_and_search(store: str, mode: str, dense_path: Path, colbert_path: Path, tmp_path: Path) -> None:
    """``lfm-retrieval index`` of 40 catalog records into ``store`` and ``search`` on it; a second index
    run writes nothing."""
    models = ["--model", str(dense_path), "--colbert", str(colbert_path), "--mode", mode]
    catalog = tmp_path / "catalog.jsonl"
    catalog.write_text("".join(Path(SAMPLE_CATALOG).read_text(encoding="utf-8").splitlines(True)[:40]), "utf-8")
    runner = CliRunner()
    index = ["index", str(catalog), "--store", store, *models, "--payload", "title", "--json"]
    indexed = runner.invoke(app, index)
    assert indexed.exit_code == 0, indexed.output
    summary = json.loads(indexed.stdout[indexed.stdout.index("{") :])
    assert (summary["read"], summary["written"], summary["failed"]) == (40, 40, 0)
    found = runner.invoke(app, ["search", "waterproof jacket", "--store", store, *models, "-k", "3", "--json"])
    assert found.exit_code == 0, found.output
    hits = json.loads(found.stdout)
    assert len(hits) == 3 and all(hit["payload"]["title"] for hit in hits)
    again = runner.invoke(app, index)
    assert again.exit_code == 0, again.output
    assert json.loads(again.stdout[again.stdout.index("{") :])["written"] == 0, "unchanged records are skipped"


def check_copy_from_qdrant_edge(kind: str, tmp_path: Path, destination_uri: str) -> tuple[Store, Store]:
    """``copy_collection`` of 150 records from an embedded Qdrant into ``destination_uri``: the same
    collection, a second copy skips every record, and a search ranks alike. Returns the open
    ``(source, destination)`` for the caller to close."""
    from stores.test_copy import SPECS as COPY_SPECS
    from stores.test_copy import _records, assert_same_collection

    source = open_store(f"qdrant+edge://{tmp_path}/edge/src", kind=kind)
    source.ensure_collection(COPY_SPECS[kind])
    source.upsert(_records(150, kind))
    destination = open_store(destination_uri, kind=kind)
    report = copy_collection(source, destination, batch_size=64, progress=False)
    assert (report.copied, report.total) == (150, 150)
    assert destination.collection_spec() == COPY_SPECS[kind]
    assert_same_collection(source, destination)
    again = copy_collection(source, destination, batch_size=64, progress=False)
    assert (again.copied, again.skipped) == (0, 150)
    query = _records(1, kind, seed=9)[0]
    args = (query.token_vectors,) if kind == "multivector" else (query.vector, query.token_vectors)
    assert [h.key for h in destination.search(*args, 5)] == [h.key for h in source.search(*args, 5)]
    return source, destination

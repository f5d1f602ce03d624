"""``copy_collection`` / ``lfm-retrieval copy``: a collection moves between stores of the same kind
with its vectors, payloads and fingerprints, never re-encoded; incompatible destinations are
refused before anything is written; a killed copy run again ends complete without duplicates."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import numpy as np
import pytest
from typer.testing import CliRunner

from lfm_retrieval import DenseEncoder
from lfm_retrieval.catalog import CatalogJob
from lfm_retrieval.cli import app
from lfm_retrieval.errors import CollectionMismatchError
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, copy_collection, copy_uri, open_store

pytest.importorskip("qdrant_edge")

DIM = 12
DENSE = CollectionSpec(DIM, "cosine", model="copy-test")
MV = CollectionSpec(8, "dot", model="colbert-copy-test", kind="multivector")
SPECS = {"dense": DENSE, "multivector": MV, "hybrid": HybridSpec(DENSE, MV)}


def with_query(uri: str, **params: str) -> str:
    """``uri`` with query parameters added (e.g. the PostgreSQL table)."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(query=urlencode({**dict(parse_qsl(parts.query)), **params})))


def _unit(vector: np.ndarray) -> np.ndarray:
    return (vector / np.linalg.norm(vector)).astype(np.float32)


def _records(n: int, kind: str, seed: int = 0) -> list[Record]:
    """Unit dense vectors, as encoders give them: Qdrant stores a cosine vector normalised (so would
    a copy out of it), and these compare exactly. Token vectors are raw: the MaxSim spec is "dot"."""
    rng = np.random.default_rng(seed)
    return [
        Record(
            f"SKU-{i:04d}/en",
            _unit(rng.normal(size=DIM)) if kind != "multivector" else None,
            {"i": i, "title": f"item {i}", "tags": ["a", "b"], "nested": {"price": i / 3}},
            f"fp-{i}",
            token_vectors=rng.normal(size=(int(rng.integers(2, 9)), 8)).astype(np.float32) if kind != "dense" else None,
        )
        for i in range(n)
    ]


def _snapshot(store) -> dict[str, tuple]:
    return {r.key: (r.payload, r.fingerprint, r.vector, r.token_vectors) for r in store.scan(64)}


def same_json(left, right) -> bool:
    """Equal JSON values, floats within 1e-15 relative: Qdrant's engine (qdrant-edge-py 0.9.0) parses a
    payload float to within one ULP (e.g. 90.33333333333333 comes back as 90.33333333333331)."""
    if isinstance(left, float) and isinstance(right, float):
        return math.isclose(left, right, rel_tol=1e-15, abs_tol=0.0)
    if isinstance(left, dict) and isinstance(right, dict):
        return left.keys() == right.keys() and all(same_json(left[k], right[k]) for k in left)
    if isinstance(left, list) and isinstance(right, list):
        return len(left) == len(right) and all(same_json(a, b) for a, b in zip(left, right, strict=True))
    return type(left) is type(right) and left == right


def assert_same_collection(source, destination, tolerance: float = 1e-6) -> None:
    """Same keys, payloads and fingerprints; vectors equal within ``tolerance``."""
    left, right = _snapshot(source), _snapshot(destination)
    assert sorted(left) == sorted(right) and destination.count() == source.count()
    assert destination.fingerprints() == source.fingerprints()
    for key, (payload, fp, vector, tokens) in left.items():
        assert same_json(right[key][0], payload) and right[key][1] == fp
        for mine, theirs in ((vector, right[key][2]), (tokens, right[key][3])):
            assert (mine is None) == (theirs is None)
            if mine is not None:
                assert mine.shape == theirs.shape and float(np.max(np.abs(mine - theirs))) < tolerance


@pytest.mark.parametrize("kind", ["dense", "multivector", "hybrid"])
def test_memory_to_edge_copies_everything_and_a_second_run_copies_nothing(tmp_path, kind):
    source = open_store(f"memory://copy-src-{kind}", kind=kind)
    source.ensure_collection(SPECS[kind])
    source.upsert(_records(300, kind))
    destination = open_store(f"qdrant+edge://{tmp_path}/dst", kind=kind)
    report = copy_collection(source, destination, batch_size=64, progress=False)
    assert (report.copied, report.skipped, report.total) == (300, 0, 300)
    assert destination.collection_spec() == SPECS[kind]
    assert_same_collection(source, destination)
    again = copy_collection(source, destination, batch_size=64, progress=False)
    assert (again.copied, again.skipped) == (0, 300)
    source.update_payloads([("SKU-0001/en", {"i": -1}, "fp-changed")])
    third = copy_collection(source, destination, progress=False)
    assert (third.copied, third.skipped) == (1, 299)
    assert_same_collection(source, destination)
    destination.close()


def test_qdrant_local_to_edge_hybrid(tmp_path):
    source = open_store(f"qdrant+local://{tmp_path}/local/src", kind="hybrid")
    source.ensure_collection(SPECS["hybrid"])
    source.upsert(_records(120, "hybrid"))
    report = copy_uri(source.uri, f"qdrant+edge://{tmp_path}/edge/dst", batch_size=50, progress=False)
    assert (report.copied, report.total) == (120, 120)
    with open_store(f"qdrant+edge://{tmp_path}/edge/dst", kind="hybrid") as destination:
        assert_same_collection(source, destination)
        query = _records(1, "hybrid", seed=5)[0]
        mine = source.search(query.vector, query.token_vectors, k=5, prefetch=50)
        theirs = destination.search(query.vector, query.token_vectors, k=5, prefetch=50)
        assert [h.key for h in mine] == [h.key for h in theirs]
    source.close()


def _edge_source(tmp_path, n: int = 400):
    source = open_store(f"qdrant+edge://{tmp_path}/edge/src")
    source.ensure_collection(DENSE)
    source.upsert(_records(n, "dense"))
    return source


def test_edge_to_postgresql(tmp_path, postgres_dsn):
    pytest.importorskip("lfm_retrieval_pgvector")
    source = _edge_source(tmp_path)
    destination = open_store(with_query(postgres_dsn, table=f"copy_{tmp_path.name[-12:].replace('-', '_')}"))
    report = copy_collection(source, destination, batch_size=128, progress=False)
    assert report.copied == 400
    assert_same_collection(source, destination)
    destination.close()
    source.close()


def test_edge_to_milvus(tmp_path, milvus_uri):
    pytest.importorskip("lfm_retrieval_milvus")
    source = _edge_source(tmp_path, 300)
    destination = open_store(f"{milvus_uri.rstrip('/')}/copy_{tmp_path.name[-12:].replace('-', '_')}")
    report = copy_collection(source, destination, batch_size=128, progress=False)
    assert report.copied == 300
    assert_same_collection(source, destination)
    destination.close()
    source.close()


def test_incompatible_destinations_are_refused_before_anything_is_written(tmp_path):
    source = open_store(f"qdrant+edge://{tmp_path}/src", kind="hybrid")
    source.ensure_collection(SPECS["hybrid"])
    source.upsert(_records(10, "hybrid"))
    dense = open_store(f"memory://copy-refuse-{tmp_path.name}")
    with pytest.raises(CollectionMismatchError, match="hybrid"):
        copy_collection(source, dense, progress=False)
    assert dense._read_spec() is None, "nothing created"
    other_dim = open_store(f"qdrant+edge://{tmp_path}/other", kind="hybrid")
    other_dim.ensure_collection(HybridSpec(CollectionSpec(DIM + 1, model="copy-test"), MV))
    other_dim.upsert([Record("x", np.ones(DIM + 1), token_vectors=np.ones((2, 8)))])
    with pytest.raises(CollectionMismatchError, match="dimension"):
        copy_collection(source, other_dim, progress=False)
    assert other_dim.count() == 1 and other_dim.fingerprints() == {"x": ""}
    with pytest.raises(ValueError, match="same store"):
        copy_collection(source, source, progress=False)
    with pytest.raises(LookupError):
        copy_uri(f"qdrant+edge://{tmp_path}/missing", f"memory://copy-nowhere-{tmp_path.name}", progress=False)
    other_dim.close()
    source.close()


def test_a_catalog_rerun_against_the_copy_encodes_nothing(tmp_path, dense_path, postgres_dsn):
    """Index into the embedded default, copy to PostgreSQL, run the same job there: 0 encoded."""
    pytest.importorskip("lfm_retrieval_pgvector")
    rows = [{"sku": f"S{i}", "title": f"thing {i}", "price": i} for i in range(40)]
    encoder = DenseEncoder(str(dense_path), device="cpu")

    def run(uri: str):
        with open_store(uri) as store:
            job = CatalogJob(encoder, store, text="{title}", key="{sku}", payload=["price"], progress=False)
            return job.run(rows)

    edge = f"qdrant+edge://{tmp_path}/catalog"
    assert run(edge).encoded == 40
    postgres = with_query(postgres_dsn, table=f"catalog_{tmp_path.name[-12:].replace('-', '_')}")
    assert copy_uri(edge, postgres, progress=False).copied == 40
    again = run(postgres)
    assert (again.encoded, again.unchanged) == (0, 40)


KILLED_COPY = """
import os, signal, sys
from lfm_retrieval.stores import copy_uri, open_store
from lfm_retrieval.stores.base import Store
original, calls = Store.upsert, {"n": 0}
def upsert(self, records, **kw):
    calls["n"] += 1
    if calls["n"] == 3:
        os.kill(os.getpid(), signal.SIGKILL)
    return original(self, records, **kw)
Store.upsert = upsert
copy_uri(sys.argv[1], sys.argv[2], batch_size=50, progress=False)
"""


def test_a_killed_copy_run_again_ends_complete_without_duplicates(tmp_path):
    source_uri, destination_uri = f"qdrant+edge://{tmp_path}/src", f"qdrant+edge://{tmp_path}/dst"
    with open_store(source_uri) as source:
        source.ensure_collection(DENSE)
        source.upsert(_records(400, "dense"))
    killed = subprocess.run([sys.executable, "-c", KILLED_COPY, source_uri, destination_uri], timeout=300)
    assert killed.returncode == -signal.SIGKILL
    with open_store(destination_uri) as partial:
        assert partial.count() == 100, "two batches of 50 written before the kill"
    result = CliRunner().invoke(app, ["copy", source_uri, destination_uri, "--batch-size", "50"])
    assert result.exit_code == 0, result.output
    assert "copied 300, skipped 100" in result.output
    with open_store(source_uri) as source, open_store(destination_uri) as destination:
        assert destination.count() == 400 == len(destination.fingerprints())
        assert_same_collection(source, destination)
    refused = CliRunner().invoke(app, ["copy", source_uri, f"qdrant+edge://{tmp_path}/dst2", "--batch-size", "0"])
    assert refused.exit_code != 0
    assert not Path(tmp_path, "dst2", "edge_config.json").exists()

"""The catalog job: incremental, sync deletes, bad records, sources, progress (exact memory store)."""

from __future__ import annotations

import csv
import json
import logging
from itertools import count

import pytest

from lfm_retrieval import DenseEncoder
from lfm_retrieval.catalog import CatalogJob, read_source
from lfm_retrieval.errors import BadRecordError
from lfm_retrieval.search import search_text
from lfm_retrieval.stores import open_store

_stores = count()


def make_catalog(n: int) -> list[dict]:
    return [
        {
            "sku": f"SKU-{i:05d}",
            "locale": ["en", "de", "fr"][i % 3],
            "title": f"Product {i} title",
            "description": f"A fine product number {i}, made with care.",
            "price": float(i),
            "attributes": {"colour": ["red", "blue"][i % 2]},
        }
        for i in range(n)
    ]


@pytest.fixture
def job(dense_path):
    encoder = DenseEncoder(str(dense_path), device="cpu")
    store = open_store(f"memory://catalog-{next(_stores)}")
    return CatalogJob(
        encoder,
        store,
        text="{title}. {description}",
        key="{sku}/{locale}",
        payload=["sku", "price", "attributes.colour"],
        batch_size=16,
        progress=False,
    )


def test_incremental_runs_encode_only_what_changed(job):
    catalog = make_catalog(100)
    first = job.run(catalog)
    assert (first.read, first.encoded, first.written, first.unchanged) == (100, 100, 100, 0)
    assert job.store.count() == 100

    again = job.run(catalog)
    assert (again.encoded, again.unchanged, again.payload_updated) == (0, 100, 0)

    changed = [dict(r) for r in catalog]
    for r in changed[:5]:
        r["description"] += " Now improved."
    for r in changed[5:8]:
        r["price"] += 1.0  # payload only: no re-encoding
    third = job.run(changed)
    assert (third.encoded, third.payload_updated, third.unchanged) == (5, 3, 92)
    hit = job.store.search(job.encoder.encode_queries(["Product 6 title"])[0], k=1, filter={"sku": "SKU-00006"})[0]
    assert hit.payload == {"sku": "SKU-00006", "price": 7.0, "attributes.colour": "red"}
    assert job.store.count() == 100


def test_sync_mode_deletes_exactly_the_records_that_left(job):
    catalog = make_catalog(100)
    job.run(catalog)
    job.run(catalog[1:])  # not sync: nothing deleted
    assert job.store.count() == 100
    job.sync = True
    summary = job.run(catalog[:50] + catalog[51:99])
    assert summary.deleted == 2 and summary.encoded == 0
    assert set(job.store.fingerprints()) == {f"{r['sku']}/{r['locale']}" for r in catalog[:50] + catalog[51:99]}


def test_bad_records_are_reported_with_their_position_and_skipped(job, tmp_path):
    good = make_catalog(3)
    lines = [json.dumps(r) for r in good]
    lines += [
        json.dumps({"locale": "en", "title": "no sku", "description": "x"}),  # missing id field
        json.dumps({"sku": "S-1", "locale": "en", "description": "no title"}),  # missing template field
        json.dumps({"sku": "S-2", "locale": "en", "title": {"en": "nested"}, "description": "x"}),  # non-text
        json.dumps(good[0]),  # duplicate key
        "{not json",
        json.dumps(["a", "list"]),
    ]
    path = tmp_path / "catalog.jsonl"
    path.write_text("\n".join(lines) + "\n")
    summary = job.run(path)
    assert summary.written == 3 and summary.failed == 6
    positions = [p for p, _ in summary.bad_records]
    assert positions == [f"catalog.jsonl:{n}" for n in range(4, 10)]
    problems = " | ".join(m for _, m in summary.bad_records)
    for expected in (
        "no field 'sku'",
        "no field 'title'",
        "is dict, not text",
        "duplicate key",
        "not valid JSON",
        "not an object",
    ):
        assert expected in problems
    assert job.store.count() == 3


def test_on_error_fail_stops_at_the_first_bad_record_and_keeps_the_index(job):
    job.run(make_catalog(10))
    job.on_error = "fail"
    bad = [*make_catalog(10), {"sku": "X", "locale": "en", "description": "no title"}]
    bad[0] = dict(bad[0], description="changed")
    with pytest.raises(BadRecordError, match=r"#10: has no field 'title'"):
        job.run(bad)
    assert job.store.count() == 10


def test_csv_parquet_and_nested_fields(job, tmp_path):
    pyarrow = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = make_catalog(6)
    flat = [{k: v for k, v in r.items() if k != "attributes"} for r in rows]
    csv_path = tmp_path / "c.csv"
    with csv_path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(flat[0]))
        writer.writeheader()
        writer.writerows(flat)
    parquet_path = tmp_path / "c.parquet"
    pq.write_table(pyarrow.Table.from_pylist(rows), parquet_path)
    assert [r.position for r in read_source(csv_path)][:2] == ["c.csv:2", "c.csv:3"]
    assert next(iter(read_source(parquet_path))).fields["attributes"] == {"colour": "red"}
    job.payload = ["sku", "attributes.colour"]
    job.text = "{title}. {attributes.colour}"
    assert job.run(parquet_path).written == 6
    job.text, job.payload = "{title}. {description}", ["sku"]
    assert job.run(csv_path).read == 6


def test_progress_logs_structured_lines_when_not_on_a_terminal(job, caplog):
    from lfm_retrieval.catalog.job import Summary
    from lfm_retrieval.catalog.progress import Progress

    with caplog.at_level(logging.INFO, logger="lfm_retrieval.catalog"):
        with Progress(total=4, enabled=False, unit="records", log_every=0.0) as bar:
            bar.advance(1, Summary(encoded=1))
        job.run(make_catalog(5))
    line = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("progress "))
    fields = json.loads(line.removeprefix("progress "))
    assert fields["read"] == 1 and fields["total"] == 4 and fields["encoded"] == 1 and "eta_s" in fields
    assert any("catalog run finished" in r.getMessage() for r in caplog.records)


@pytest.fixture(scope="module")
def colbert(colbert_path):
    from lfm_retrieval import ColBERTEncoder

    return ColBERTEncoder(str(colbert_path), device="cpu")


def _stored_token_vectors(store, key):
    """The token vectors a memory store holds for ``key`` (what the job wrote)."""
    from lfm_retrieval.stores import stable_id

    vectors = store._data["rows"][stable_id(key)][1]
    return vectors[1] if isinstance(vectors, tuple) else vectors


def test_colbert_job_writes_document_token_vectors_and_is_incremental(colbert):
    store = open_store(f"memory://catalog-{next(_stores)}", kind="multivector")
    job = CatalogJob(colbert, store, text="{title}. {description}", key="{sku}/{locale}", batch_size=8, progress=False)
    catalog = make_catalog(20)
    assert job.run(catalog).encoded == 20
    expected = colbert.encode_documents([f"{r['title']}. {r['description']}" for r in catalog[:3]])
    for record, tokens in zip(catalog[:3], expected, strict=True):
        assert (_stored_token_vectors(store, f"{record['sku']}/{record['locale']}") == tokens).all()
    assert job.run(catalog).encoded == 0
    query = colbert.encode_queries(["Product 7 title"])[0]
    assert store.search(query, k=20)[0].key in {f"{r['sku']}/{r['locale']}" for r in catalog}


def test_dense_and_colbert_in_one_pass_into_a_hybrid_collection(dense, colbert):
    store = open_store(f"memory://catalog-{next(_stores)}", kind="hybrid")
    job = CatalogJob(
        dense, store, text="{title}", key="{sku}/{locale}", payload=["sku"], colbert=colbert, progress=False
    )
    catalog = make_catalog(30)
    first = job.run(catalog)
    assert (first.encoded, first.written) == (30, 30)
    hits = search_text(store, "Product 4 title", dense=dense, colbert=colbert, k=5, prefetch=30)
    assert len(hits) == 5 and all("sku" in hit.payload for hit in hits)
    changed = [dict(r) for r in catalog]
    changed[4]["title"] = "Renamed product"
    assert job.run(changed).encoded == 1
    assert (_stored_token_vectors(store, "SKU-00004/de") == colbert.encode_documents(["Renamed product"])[0]).all()


def test_dense_and_colbert_into_two_stores_resume_each_on_its_own(dense, colbert):
    dense_store = open_store(f"memory://catalog-{next(_stores)}")
    colbert_store = open_store(f"memory://catalog-{next(_stores)}", kind="multivector")
    job = CatalogJob(
        dense,
        dense_store,
        text="{title}",
        key="{sku}/{locale}",
        colbert=colbert,
        colbert_store=colbert_store,
        sync=True,
        progress=False,
    )
    catalog = make_catalog(12)
    job.run(catalog)
    assert dense_store.count() == colbert_store.count() == 12
    colbert_store.delete(["SKU-00003/en"])  # as if a run died after the dense write only
    summary = job.run(catalog[:-1])
    assert summary.encoded == 1 and summary.deleted == 1
    assert (
        set(dense_store.fingerprints())
        == set(colbert_store.fingerprints())
        == {f"{r['sku']}/{r['locale']}" for r in catalog[:-1]}
    )


def test_job_refuses_a_store_of_the_wrong_kind(dense, colbert):
    multivector = open_store(f"memory://catalog-{next(_stores)}", kind="multivector")
    with pytest.raises(ValueError, match="need a dense store"):
        CatalogJob(dense, multivector, text="{title}", key="{sku}").run(make_catalog(2))
    with pytest.raises(ValueError, match="need a hybrid store"):
        CatalogJob(dense, open_store("memory://x"), text="{title}", key="{sku}", colbert=colbert).run([])

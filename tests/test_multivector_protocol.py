"""The multivector and hybrid store protocol: validation, kinds, exact MaxSim (memory stores)."""

from __future__ import annotations

from itertools import count

import numpy as np
import pytest

from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError
from lfm_retrieval.scoring import maxsim_scores
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, open_store

_names = count()
MULTI = CollectionSpec(4, kind="multivector", model="colbert")
HYBRID = HybridSpec(CollectionSpec(3, model="dense"), MULTI)


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=-1, keepdims=True)).astype(np.float32)


def _store(kind: str, spec):
    store = open_store(f"memory://mv-{next(_names)}", kind=kind)
    store.ensure_collection(spec)
    return store


def test_multivector_search_is_exact_maxsim_with_filters():
    rng = np.random.default_rng(0)
    docs = [_unit(rng.normal(size=(int(rng.integers(1, 9)), 4))) for _ in range(40)]
    store = _store("multivector", MULTI)
    store.upsert(Record(f"d{i}", token_vectors=d, payload={"even": i % 2 == 0}) for i, d in enumerate(docs))
    query = _unit(rng.normal(size=(5, 4)))
    expected = maxsim_scores([query], docs)[0]
    hits = store.search(query, k=10)
    assert [h.key for h in hits] == [f"d{i}" for i in np.argsort(-expected, kind="stable")[:10]]
    assert np.allclose([h.score for h in hits], np.sort(expected)[::-1][:10], atol=1e-5)
    assert all(h.payload["even"] for h in store.search(query, k=40, filter={"even": True}))
    store.upsert([Record("d0", token_vectors=docs[0])])
    assert store.count() == 40


def test_hybrid_search_reranks_the_dense_top_n_by_maxsim_and_filters_both_stages():
    # d0 is dense-nearest but weak on MaxSim; d1 is strong on MaxSim; d2 is outside the top-2.
    store = _store("hybrid", HYBRID)
    tokens = {"d0": [[1, 0, 0, 0]], "d1": [[0, 1, 0, 0]], "d2": [[0, 1, 0, 0]]}
    dense = {"d0": [1, 0, 0], "d1": [0.9, 0.1, 0], "d2": [0, 0, 1]}
    store.upsert(
        Record(k, vector=dense[k], token_vectors=tokens[k], payload={"shop": "b" if k == "d1" else "a"}) for k in dense
    )
    query_tokens = [[0, 1, 0, 0]]
    assert [h.key for h in store.search([1, 0, 0], query_tokens, k=2, prefetch=2)] == ["d1", "d0"]
    filtered = store.search([1, 0, 0], query_tokens, k=2, prefetch=2, filter={"shop": "a"})
    assert [h.key for h in filtered] == ["d2", "d0"]  # d1 gone from the prefetch, so d2 gets in


@pytest.mark.parametrize(
    ("tokens", "problem"),
    [
        (np.zeros((0, 4)), "zero token vectors"),
        (np.ones((3, 5)), r"expected \(tokens, 4\)"),
        ([[1, 0, 0, 0], [1, 0, 0]], "not one rectangular array"),
        ([[1, 0, 0, float("nan")]], "NaN"),
    ],
)
def test_bad_token_vectors_name_the_record_and_write_nothing(tokens, problem):
    store = _store("multivector", MULTI)
    good = Record("good", token_vectors=np.eye(4)[:2])
    with pytest.raises(InvalidRecordError, match=f"'bad'.*{problem}"):
        store.upsert([good, Record("bad", token_vectors=tokens)])
    assert store.count() == 0


def test_dense_vectors_into_a_multivector_collection_and_the_reverse_are_refused():
    multi, dense = _store("multivector", MULTI), _store("dense", CollectionSpec(4))
    with pytest.raises(InvalidRecordError, match="dense vector was given to a multivector"):
        multi.upsert([Record("a", [1, 0, 0, 0])])
    with pytest.raises(InvalidRecordError, match="token vectors were given to a dense"):
        dense.upsert([Record("a", token_vectors=[[1, 0, 0, 0]])])
    hybrid = _store("hybrid", HYBRID)
    with pytest.raises(InvalidRecordError, match="no token_vectors"):
        hybrid.upsert([Record("a", [1, 0, 0])])
    assert multi.count() == dense.count() == hybrid.count() == 0


def test_opening_a_collection_as_another_kind_is_an_error_before_writing():
    name = f"memory://mv-{next(_names)}"
    open_store(name, kind="multivector").ensure_collection(MULTI)
    with pytest.raises(CollectionMismatchError, match="multivector collection"):
        open_store(name).count()
    with pytest.raises(CollectionMismatchError, match="kind: stored 'multivector', asked 'dense'"):
        open_store(name).ensure_collection(CollectionSpec(4, model="colbert"))
    with pytest.raises(CollectionMismatchError, match="not a hybrid one"):
        open_store(name, kind="hybrid").ensure_collection(HYBRID)
    with pytest.raises(CollectionMismatchError, match="stores multivector collections, not dense"):
        open_store(name, kind="multivector").ensure_collection(CollectionSpec(4))
    with pytest.raises(ValueError, match="kind must be one of"):
        open_store(name, kind="sparse")


def test_query_token_vectors_are_checked():
    store = _store("multivector", MULTI)
    with pytest.raises(ValueError, match="zero token vectors"):
        store.search(np.zeros((0, 4)))
    with pytest.raises(ValueError, match=r"expected \(tokens, 4\)"):
        store.search([1.0, 0.0, 0.0, 0.0])


def test_spec_for_a_colbert_encoder_is_a_multivector_spec(colbert_path):
    from lfm_retrieval import ColBERTEncoder

    spec = CollectionSpec.for_encoder(ColBERTEncoder(str(colbert_path), device="cpu"))
    assert (spec.kind, spec.dimension, spec.distance) == ("multivector", 128, "cosine")

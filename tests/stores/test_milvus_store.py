"""The Milvus adapter beyond the conformance suite, against the real Milvus 2.3 server (and
Milvus Lite): read-your-writes, the expression builder (escaping, and agreement with the
portable ``matches`` on the server's own parser), the spec and schema, bad records,
payload updates, and a Lite round trip."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest

pytest.importorskip("lfm_retrieval_milvus")

from pymilvus import DataType, MilvusClient

from lfm_retrieval.errors import CollectionMismatchError, InvalidRecordError
from lfm_retrieval.stores import CollectionSpec, Record, Store, matches, open_store, parse_filter
from lfm_retrieval.testing.stores import DenseStoreSuite
from lfm_retrieval_milvus import NEVER, MilvusDenseStore, UnsupportedSpecError, parse_uri, to_filter
from lfm_retrieval_milvus.layout import SPEC_PROPERTY

pytestmark = pytest.mark.one_stack  # both stacks pin the same store clients (tests/conftest.py)
INJECTION = "x'); DROP TABLE t; --"
SPEC = CollectionSpec(dimension=8, model="unit-test-model")
rng = np.random.default_rng(11)
_names = itertools.count()


def _name(prefix: str = "m") -> str:
    return f"{prefix}_{next(_names)}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def server_store(milvus_uri, request):
    """``server_store(**options)``: a store on a fresh collection of the test server."""
    opened: list[MilvusDenseStore] = []

    def make(name: str | None = None, **options) -> MilvusDenseStore:
        store = open_store(f"{milvus_uri.rstrip('/')}/{name or _name()}", **options)
        opened.append(store)
        return store

    yield make
    for store in opened:
        store.close()


class MilvusFixture:
    """``make_store`` of the suite's ``kind`` on the test server (``server``) or a Milvus Lite file of the
    test's own (``lite``); the multivector and hybrid suites use it too."""

    mode: str
    kind: str  # the suite's
    float16 = False  # a Milvus 2.3 server and Milvus Lite hold no float16 dense vectors

    @pytest.fixture
    def make_store(self, request: pytest.FixtureRequest, tmp_path) -> Iterator[Callable[..., Store]]:
        if self.mode == "lite":
            pytest.importorskip("milvus_lite")
            base = f"milvus+lite://{tmp_path}/lite.db"
        else:
            base = request.getfixturevalue("milvus_uri").rstrip("/")
        names: dict[str, str] = {}
        opened: list[Store] = []

        def make(name: str = "c") -> Store:
            names.setdefault(name, _name(f"conf_{name}"))
            opened.append(open_store(f"{base}/{names[name]}", kind=self.kind))
            return opened[-1]

        yield make
        for store in opened:
            store.close()


class TestMilvusServerDense(MilvusFixture, DenseStoreSuite):
    mode = "server"


class TestMilvusLiteDense(MilvusFixture, DenseStoreSuite):
    mode = "lite"


def _client(store: MilvusDenseStore) -> MilvusClient:
    return store.client


def _vectors(n: int) -> np.ndarray:
    return rng.normal(size=(n, 8)).astype(np.float32)


# -- read-your-writes ---------------------------------------------------------------------------


def test_a_record_is_found_by_the_search_right_after_its_upsert(server_store):
    store = server_store()
    store.ensure_collection(SPEC)
    other = server_store(store.collection)  # another client in the same process
    for i, vector in enumerate(_vectors(10)):
        record = Record(f"fresh-{i}", vector, {"i": i})
        store.upsert([record])
        assert store.search(vector, k=1)[0].key == record.key
        assert other.search(vector, k=1)[0].key == record.key
        assert store.count() == i + 1
    store.delete(["fresh-3"])
    assert all(hit.key != "fresh-3" for hit in store.search(_vectors(1)[0], k=10))
    assert store.count() == 9


def test_writes_of_another_process_are_counted_at_once_and_searched_with_strong(server_store, milvus_uri):
    name = _name()
    store = server_store(name)
    store.ensure_collection(SPEC)
    vectors = _vectors(5)
    script = (
        "import sys, numpy as np\n"
        "from lfm_retrieval.stores import CollectionSpec, Record, open_store\n"
        "store = open_store(sys.argv[1])\n"
        "store.ensure_collection(CollectionSpec(dimension=8, model='unit-test-model'))\n"
        "vectors = np.array(eval(sys.argv[2]), dtype=np.float32)\n"
        "store.upsert([Record(f'child-{i}', v, {'i': i}) for i, v in enumerate(vectors)])\n"
        "store.close()\n"
    )
    uri = f"{milvus_uri.rstrip('/')}/{name}"
    subprocess.run([sys.executable, "-c", script, uri, repr(vectors.tolist())], check=True, timeout=120)
    assert store.count() == 5, "counts are Strong: exact whoever wrote"
    strong = server_store(name, consistency="Strong")
    assert [strong.search(v, k=1)[0].key for v in vectors] == [f"child-{i}" for i in range(5)]


def test_an_unknown_consistency_level_is_refused(milvus_uri):
    with pytest.raises(ValueError, match="consistency"):
        open_store(f"{milvus_uri.rstrip('/')}/{_name()}", consistency="Sometimes")


def test_the_session_server_runs_with_the_short_intervals(milvus_uri):
    """The test server's polling settings reach the Milvus process (milvus_server(short_intervals=True))."""
    from lfm_retrieval.testing.servers import SHORT_INTERVALS

    if os.environ.get("LFM_TEST_MILVUS_URI"):
        pytest.skip("a server from the environment: its settings are its own")
    port = urlsplit(milvus_uri).port
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if (
                b"standalone" in (proc / "cmdline").read_bytes()
                and f"port: {port}\n" in (proc / "cwd" / "configs" / "milvus.yaml").read_text()
            ):
                found.append(
                    dict(line.split("=", 1) for line in (proc / "environ").read_text().split("\0") if "=" in line)
                )
        except OSError:  # another user's process, or one that just exited
            continue
    assert len(found) == 1, f"one Milvus process on port {port}, found {len(found)}"
    assert {key: found[0].get(key) for key in SHORT_INTERVALS} == SHORT_INTERVALS


# -- the expression builder ---------------------------------------------------------------------


def test_keys_and_values_are_escaped_as_string_literals():
    tricky = 'a"b\\c'
    assert to_filter(parse_filter({tricky: tricky})) == 'metadata["a\\"b\\\\c"] == "a\\"b\\\\c"'
    assert to_filter(parse_filter({INJECTION: INJECTION})) == (
        'metadata["x\'); DROP TABLE t; --"] == "x\'); DROP TABLE t; --"'
    )
    assert to_filter(parse_filter({"k": "line\nnext\ttab\rret"})) == 'metadata["k"] == "line\\nnext\\ttab\\rret"'
    # a value cannot close the literal and add a clause of its own
    assert to_filter(parse_filter({"k": '" or 1 == 1 or "'})) == 'metadata["k"] == "\\" or 1 == 1 or \\""'


def test_numbers_booleans_membership_and_ranges():
    assert to_filter(parse_filter({"n": 3})) == 'metadata["n"] == 3'
    assert to_filter(parse_filter({"n": 2.5})) == 'metadata["n"] == 2.5'
    assert to_filter(parse_filter({"b": True})) == 'metadata["b"] == true'
    assert to_filter(parse_filter({"p": {"gte": 1, "lt": 2.5}})) == ('(metadata["p"] >= 1) and (metadata["p"] < 2.5)')
    # Milvus refuses an `in` list that mixes kinds: one test per kind
    assert to_filter(parse_filter({"c": {"in": ["a", "b", 2, 3, 3.5, True]}})) == (
        '(metadata["c"] in ["a", "b"]) or (metadata["c"] in [2, 3]) '
        'or (metadata["c"] == 3.5) or (metadata["c"] == true)'
    )
    assert to_filter(parse_filter({"c": {"in": ["a", "b"]}}), in_lists=False) == (
        '(metadata["c"] == "a") or (metadata["c"] == "b")'
    )
    assert to_filter(None) is None


def test_bounds_no_number_can_reach():
    assert to_filter(parse_filter({"p": {"gt": float("inf")}})) is NEVER
    assert to_filter(parse_filter({"p": {"lt": -(10**400)}})) is NEVER
    assert to_filter(parse_filter({"p": {"lt": float("inf")}})) == 'metadata["p"] >= -1.7976931348623157e+308'
    assert to_filter(parse_filter({"p": float("inf")})) is NEVER
    assert to_filter(parse_filter({"$or": [{"p": {"gt": float("inf")}}, {"q": 1}]})) == 'metadata["q"] == 1'
    assert to_filter(parse_filter({"p": {"gt": float("inf")}, "q": 1})) is NEVER
    assert to_filter(parse_filter({"n": 2**64})) == 'metadata["n"] == 1.8446744073709552e+19'


# Payloads whose values differ only in type, escaping or JSON-path spelling.
TRICKY_KEYS = [INJECTION, 'q"b\\', "a/b", "a~1b", "a.b", "é ü", "tab\tkey", "0"]
TRICKY_VALUES = [
    True, False, 1, 1.0, 0, 0.0, -0.0, 2.5, -7, 2**62, "1", "true", "red", "", INJECTION, 'v"\\', "new\nline",
    "é", "\x01", None, [1], ["red"], {"a": 1},
]  # fmt: skip
AGREEMENT_FILTERS = [
    *({key: value} for key in TRICKY_KEYS for value in ("red", INJECTION, 'v"\\')),
    *({"v": value} for value in TRICKY_VALUES if not isinstance(value, (list, dict)) and value is not None),
    {"v": {"in": [1]}},
    {"v": {"in": [True]}},
    {"v": {"in": [0.0, "red"]}},
    {"v": {"in": ["1", "true", INJECTION, 'v"\\', "new\nline"]}},
    {"v": {"in": [2**62, -7, 2.5]}},
    {"v": {"gte": 0}},
    {"v": {"gt": 0, "lte": 2.5}},
    {"v": {"lt": 0}},
    {"v": {"gte": -1, "lt": float("inf")}},
    {"v": {"gte": 2**62}},
    {"$or": [{"v": True}, {"v": "red"}, {INJECTION: INJECTION}]},
    {"$and": [{"v": {"gte": 0}}, {"$or": [{"v": 1}, {"v": 2.5}]}]},
    {"missing": "red"},
]


def _tricky_records() -> list[Record]:
    records = [Record(f"v-{i}", vector, {"v": value}) for i, (vector, value) in enumerate(zip(
        _vectors(len(TRICKY_VALUES)), TRICKY_VALUES, strict=True))]  # fmt: skip
    records += [
        Record(f"k-{i}", vector, {key: value})
        for i, (vector, (key, value)) in enumerate(
            zip(_vectors(24), itertools.product(TRICKY_KEYS, ("red", INJECTION, 'v"\\')), strict=True)
        )
    ]
    return [*records, Record("empty", _vectors(1)[0], {})]


def _check_agreement(store) -> None:
    store.ensure_collection(SPEC)
    records = _tricky_records()
    assert store.upsert(records) == len(records)
    by_key = {r.key: r for r in records}
    for spec in AGREEMENT_FILTERS:
        expected = {r.key for r in records if matches(parse_filter(spec), r.payload)}
        found = store.search(_vectors(1)[0], k=len(records), filter=spec)
        assert {hit.key for hit in found} == expected, spec
        assert all(hit.payload == by_key[hit.key].payload for hit in found)
        assert store.count(spec) == len(expected), spec
    assert store.count() == len(records), "nothing was dropped"


def test_filters_agree_with_matches_on_the_server(server_store):
    _check_agreement(server_store())


def test_the_server_runs_the_escaped_expression_itself(server_store):
    store = server_store()
    store.ensure_collection(SPEC)
    store.upsert(
        [
            Record("hostile", _vectors(1)[0], {'q"b\\': 'v"\\', INJECTION: INJECTION}),
            Record("plain", _vectors(1)[0], {}),
        ]
    )
    for spec in ({'q"b\\': 'v"\\'}, {INJECTION: INJECTION}):
        expression = to_filter(parse_filter(spec))
        rows = _client(store).query(
            store.collection, filter=expression, output_fields=["key"], consistency_level="Strong"
        )
        assert [row["key"] for row in rows] == ["hostile"], expression
    assert _client(store).has_collection(store.collection)


# -- the spec, the schema, bad input -----------------------------------------------------------


def test_the_spec_is_recorded_in_the_collection_properties(server_store):
    store = server_store()
    store.ensure_collection(CollectionSpec(dimension=8, distance="euclid", model="m1"))
    description = _client(store).describe_collection(store.collection)
    assert SPEC_PROPERTY in description["properties"]
    fields = {f["name"]: f for f in description["fields"]}
    assert fields["id"]["is_primary"] and fields["id"]["params"]["max_length"] == 36
    assert fields["vector"]["type"] == DataType.FLOAT_VECTOR and int(fields["vector"]["params"]["dim"]) == 8
    assert fields["metadata"]["type"] == DataType.JSON
    index = _client(store).describe_index(store.collection, "vector")
    assert (index["index_type"], index["metric_type"]) == ("HNSW", "L2")
    with pytest.raises(CollectionMismatchError, match="already exists"):
        server_store(store.collection).ensure_collection(CollectionSpec(dimension=8, distance="euclid", model="m2"))


def test_a_collection_not_made_by_this_package_is_refused(server_store):
    store = server_store()
    _client(store).create_collection(store.collection, dimension=8)
    with pytest.raises(CollectionMismatchError, match="not created by lfm-retrieval"):
        store.ensure_collection(SPEC)
    assert _client(store).query(store.collection, filter="", output_fields=["count(*)"])[0]["count(*)"] == 0


def test_float16_is_refused_by_a_2_3_server_before_anything_is_created(server_store):
    store = server_store()
    with pytest.raises(UnsupportedSpecError, match=r"2\.4"):
        store.ensure_collection(CollectionSpec(dimension=8, vector_type="float16"))
    assert not _client(store).has_collection(store.collection)


@pytest.mark.parametrize(
    "payload, problem",
    [
        ({"x": 2**70}, "64-bit"),
        ({"x": [1, {"y": -(2**63) - 1}]}, "64-bit"),
        ({"x": "a" * 70000}, "bytes"),
    ],
    ids=["big-int", "nested-big-int", "too-big"],
)
def test_payloads_milvus_cannot_store_are_refused_whole(server_store, payload, problem):
    store = server_store()
    store.ensure_collection(SPEC)
    batch = [Record(f"ok-{i}", v, {"i": i}) for i, v in enumerate(_vectors(3))]
    batch.insert(1, Record("BAD/en", _vectors(1)[0], payload))
    with pytest.raises(InvalidRecordError, match=f"BAD/en.*{problem}"):
        store.upsert(batch)
    assert store.count() == 0


def test_uris():
    target = parse_uri("milvus://user:secret@db.example:1234/products?db=shop")
    assert (target.client_uri, target.collection, target.db_name, target.user, target.password) == (
        "http://db.example:1234", "products", "shop", "user", "secret"
    )  # fmt: skip
    assert "secret" not in target.display_uri
    assert parse_uri("milvus://h/c").client_uri == "http://h:19530"
    lite = parse_uri("milvus+lite://./index/milvus.db/products")
    assert lite.lite and lite.client_uri.endswith("/index/milvus.db") and lite.collection == "products"
    for bad in ["milvus://h:1/", "milvus://h:1/a/b", "milvus://h:1/1abc", "milvus://h:1/c?x=1", "milvus+lite://./x/c"]:
        with pytest.raises(ValueError):
            parse_uri(bad)


# -- Milvus Lite --------------------------------------------------------------------------------


def test_milvus_lite_round_trip(tmp_path):
    pytest.importorskip("milvus_lite")
    uri = f"milvus+lite://{tmp_path}/lite.db/products"
    vectors = _vectors(12)
    records = [
        Record(f"SKU-{i}", v, {"colour": ["red", "blue"][i % 2], "price": float(i), "flag": i % 3 == 0})
        for i, v in enumerate(vectors)
    ]
    with open_store(uri) as store:
        store.ensure_collection(SPEC)
        assert store.upsert(records) == 12
        assert store.search(vectors[4], k=1)[0].key == "SKU-4"
        assert store.count({"colour": "red"}) == 6
        found = store.search(vectors[0], k=12, filter={"price": {"gte": 2, "lt": 6}, "colour": {"in": ["red"]}})
        assert {h.key for h in found} == {"SKU-2", "SKU-4"}
        # Lite compares True == 1 and ranges over booleans: the store refilters with matches()
        assert store.count({"flag": 1}) == 0 and store.count({"flag": {"gte": 0}}) == 0
        assert store.search(vectors[0], k=12, filter={"flag": {"in": [1, 0]}}) == []
        flagged = {"SKU-0", "SKU-3", "SKU-6", "SKU-9"}
        assert {h.key for h in store.search(vectors[0], k=4, filter={"flag": True})} == flagged
        store.delete(["SKU-0"])
        assert store.count() == 11
        with pytest.raises(UnsupportedSpecError, match="Lite"):
            open_store(uri.replace("products", "halves")).ensure_collection(CollectionSpec(8, vector_type="float16"))
    with open_store(uri) as reopened:  # Lite keeps collections released on reopen: the store loads them
        assert reopened.count() == 11
        assert reopened.search(vectors[5], k=1)[0].payload == records[5].payload
        with pytest.raises(CollectionMismatchError, match="already exists"):
            reopened.ensure_collection(CollectionSpec(dimension=8, model="another-model"))


def test_filters_agree_with_matches_on_milvus_lite(tmp_path):
    pytest.importorskip("milvus_lite")
    with open_store(f"milvus+lite://{tmp_path}/lite.db/tricky") as store:
        _check_agreement(store)

"""The portable filter: parsing (with errors that name the problem), negation, and the one translator walk."""

from __future__ import annotations

import pytest

from lfm_retrieval.errors import InvalidFilterError
from lfm_retrieval.stores import And, Eq, FilterTranslator, In, Not, Or, Range, matches, parse_filter


def test_ne_nin_and_not_parse_to_not_nodes() -> None:
    assert parse_filter({"brand": {"ne": "acme"}}) == Not(Eq("brand", "acme"))
    assert parse_filter({"locale": {"nin": ["en", "de"]}}) == Not(In("locale", ("en", "de")))
    assert parse_filter({"$not": {"brand": "acme", "price": {"lt": 5}}}) == Not(
        And((Eq("brand", "acme"), Range("price", lt=5)))
    )
    assert parse_filter({"p": {"ne": 3, "gte": 1}}) == And((Not(Eq("p", 3)), Range("p", gte=1)))
    assert parse_filter({"$or": [{"$not": {"a": 1}}, {"b": {"nin": [True]}}]}) == Or(
        (Not(Eq("a", 1)), Not(In("b", (True,))))
    )
    node = Not(Eq("a", 1))
    assert parse_filter(node) is node


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"x": {"nin": "a"}}, r"'x': 'nin' takes a non-empty list, not 'a'"),
        ({"x": {"nin": []}}, r"'x': 'nin' takes a non-empty list"),
        ({"x": {"in": "ab"}}, r"'x': 'in' takes a non-empty list"),
        ({"x": {"ne": [1]}}, r"'x': value \[1\] must be a string, number or bool"),
        ({"x": {"ne": None}}, r"'x': value None must be"),
        ({"x": {"nin": [float("nan")]}}, r"'x': value nan must be"),
        ({"x": {"not": 1}}, r"unknown operator\(s\) \['not'\]; known: eq, ne, in, nin, gt"),
        ({"x": {}}, r"'x': unknown operator\(s\) \(none\)"),
        ({"$not": {}}, r"\$not takes non-empty filters, not \{\}"),
        ({"$not": None}, r"\$not takes non-empty filters"),
        ({"$not": [{"a": 1}]}, r"a filter is a dict, not list"),
        ({"$and": [{"a": 1}, {}]}, r"\$and takes non-empty filters"),
        ({"$or": []}, r"\$or takes a non-empty list"),
        ({"$not": {"$not": {"x": {"nin": 3}}}}, r"'x': 'nin' takes a non-empty list, not 3"),
        ({"$nor": [{"a": 1}]}, r"filter field '\$nor' must be a non-empty string not starting with '\$'"),
    ],
)
def test_bad_filters_name_the_problem(spec: dict, message: str) -> None:
    with pytest.raises(InvalidFilterError, match=message):
        parse_filter(spec)


PAYLOADS = {
    "acme": {"brand": "acme", "n": 1},
    "zen": {"brand": "zen", "n": 1.0},
    "flag": {"brand": True, "n": True},
    "text": {"brand": "1", "n": "1"},
    "list": {"brand": ["acme"], "n": [1]},
    "none": {"brand": None},
    "empty": {},
}


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        # a record without the field, or with a value of another type, matches a negation
        ({"brand": {"ne": "acme"}}, {"zen", "flag", "text", "list", "none", "empty"}),
        ({"n": {"ne": 1}}, {"flag", "text", "list", "none", "empty"}),
        ({"n": {"ne": True}}, {"acme", "zen", "text", "list", "none", "empty"}),
        ({"brand": {"nin": ["acme", "zen", True]}}, {"text", "list", "none", "empty"}),
        ({"$not": {"n": {"gte": 0}}}, {"flag", "text", "list", "none", "empty"}),
        ({"$not": {"$not": {"brand": "acme"}}}, {"acme"}),
        ({"$not": {"$or": [{"brand": "acme"}, {"n": "1"}]}}, {"zen", "flag", "list", "none", "empty"}),
        ({"brand": {"ne": "acme", "nin": ["zen"]}}, {"flag", "text", "list", "none", "empty"}),
    ],
)
def test_negation_is_the_complement_of_its_filter(spec: dict, expected: set[str]) -> None:
    node = parse_filter(spec)
    assert {name for name, payload in PAYLOADS.items() if matches(node, payload)} == expected
    assert isinstance(node, (Not, And))


class Text(FilterTranslator[str]):
    """A translator to readable text: every node type must have its method."""

    def equals(self, node: Eq) -> str:
        return f"{node.field}={node.value!r}"

    def member(self, node: In) -> str:
        return f"{node.field} in {list(node.values)!r}"

    def range(self, node: Range) -> str:
        return f"{node.field}:{node.gt},{node.gte},{node.lt},{node.lte}"

    def all_of(self, items: list[str]) -> str:
        return "(" + " & ".join(items) + ")"

    def any_of(self, items: list[str]) -> str:
        return "(" + " | ".join(items) + ")"

    def negate(self, item: str) -> str:
        return f"!{item}"


def test_the_translator_walks_children_first_with_one_method_per_node_type() -> None:
    node = parse_filter({"$or": [{"a": {"ne": 1}}, {"$not": {"b": {"in": ["x"]}, "c": {"gt": 2}}}]})
    assert Text().translate(node) == "(!a=1 | !(b in ['x'] & c:2,None,None,None))"
    with pytest.raises(TypeError, match="not a filter node"):
        Text().translate("a=1")  # type: ignore[arg-type]


def test_a_translator_without_negation_cannot_be_made() -> None:
    class NoNegation(FilterTranslator[str]):
        equals = member = range = all_of = any_of = Text.equals  # type: ignore[assignment]

    with pytest.raises(TypeError, match="negate"):
        NoNegation()  # type: ignore[abstract]


def test_every_adapter_translates_with_the_one_walk() -> None:
    """Each store's filter module is a FilterTranslator (a new node type fails here until it is added)."""
    translators = []
    for module, name in [
        ("lfm_retrieval_qdrant.filters", "QdrantFilters"),
        ("lfm_retrieval_qdrant.edge_filters", "EdgeFilters"),
        ("lfm_retrieval_pgvector.filters", "SqlFilters"),
        ("lfm_retrieval_milvus.filters", "ExpressionBuilder"),
    ]:
        translators.append(getattr(pytest.importorskip(module), name))
    for translator in translators:
        assert issubclass(translator, FilterTranslator)
        assert translator.translate is FilterTranslator.translate, f"{translator.__name__} walks the tree itself"
        translator().translate(parse_filter({"$not": {"a": {"nin": [1, "x"]}, "b": {"lt": 3}}}))


def test_milvus_negation_expressions() -> None:
    milvus = pytest.importorskip("lfm_retrieval_milvus.filters")
    build = milvus.to_filter
    assert build(parse_filter({"v": {"ne": "a"}})) == 'not (metadata["v"] == "a")'
    assert build(parse_filter({"v": {"nin": [1, 2]}})) == 'not (metadata["v"] in [1, 2])'
    # a value no record can hold: its negation holds for every record (no expression at all)
    assert build(parse_filter({"v": {"ne": "\ud800"}})) is None
    assert build(parse_filter({"$not": {"v": {"ne": "\ud800"}}})) is milvus.NEVER
    # Milvus Lite selects a superset and post-filters, so a negation there selects every record
    assert build(parse_filter({"v": {"ne": "a"}, "w": 1}), in_lists=False) == 'metadata["w"] == 1'
    assert build(parse_filter({"$not": {"$not": {"v": "a"}}}), in_lists=False) is None

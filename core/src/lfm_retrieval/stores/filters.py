"""One portable metadata filter, translated by each store into its own form.

A filter is a dict, as users write it in Python, JSON or on the command line::

    {"brand": "acme"}                                  # equality
    {"price": {"gte": 10, "lt": 50}}                   # range (gt, gte, lt, lte)
    {"locale": {"in": ["en", "de"]}}                   # membership
    {"brand": "acme", "price": {"lte": 20}}            # several keys: all must hold
    {"$or": [{"brand": "acme"}, {"brand": "zen"}]}     # $and / $or of filters

``parse_filter`` turns it into a small tree of nodes that store adapters translate
(Qdrant ``Filter``, parameterised SQL over JSONB, escaped Milvus expressions). Values
are never concatenated into a query language by this module.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lfm_retrieval.errors import InvalidFilterError

Scalar = str | int | float | bool
RANGE_OPS = ("gt", "gte", "lt", "lte")


@dataclass(frozen=True)
class Eq:
    field: str
    value: Scalar


@dataclass(frozen=True)
class In:
    field: str
    values: tuple[Scalar, ...]


@dataclass(frozen=True)
class Range:
    field: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class And:
    items: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    items: tuple[Node, ...]


Node = Eq | In | Range | And | Or


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, (str, bool, int, float)) and not (isinstance(value, float) and value != value):
        return value
    raise InvalidFilterError(f"{where}: value {value!r} must be a string, number or bool")


def _field(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith("$"):
        raise InvalidFilterError(f"filter field {name!r} must be a non-empty string not starting with '$'")
    return name


def _condition(name: str, spec: Any) -> Node:
    if not isinstance(spec, Mapping):
        return Eq(name, _scalar(spec, f"filter on {name!r}"))
    unknown = set(spec) - {"eq", "in", *RANGE_OPS}
    if unknown or not spec:
        raise InvalidFilterError(f"filter on {name!r}: unknown operator(s) {sorted(unknown) or '(none)'}")
    nodes: list[Node] = []
    if "eq" in spec:
        nodes.append(Eq(name, _scalar(spec["eq"], f"filter on {name!r}")))
    if "in" in spec:
        values = spec["in"]
        if not isinstance(values, (list, tuple)) or not values:
            raise InvalidFilterError(f"filter on {name!r}: 'in' takes a non-empty list")
        nodes.append(In(name, tuple(_scalar(v, f"filter on {name!r}") for v in values)))
    bounds = {op: spec[op] for op in RANGE_OPS if op in spec}
    if bounds:
        for op, bound in bounds.items():
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound != bound:
                raise InvalidFilterError(f"filter on {name!r}: {op} bound {bound!r} must be a number")
        nodes.append(Range(name, **bounds))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def parse_filter(spec: Mapping[str, Any] | Node | None) -> Node | None:
    """Validate a portable filter and return its tree (None for no filter)."""
    if spec is None or isinstance(spec, (Eq, In, Range, And, Or)):
        return spec
    if not isinstance(spec, Mapping):
        raise InvalidFilterError(f"a filter is a dict, not {type(spec).__name__}")
    nodes: list[Node] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidFilterError(f"{key} takes a non-empty list of filters")
            items = tuple(parse_filter(item) for item in value)
            nodes.append(And(items) if key == "$and" else Or(items))  # type: ignore[arg-type]
        else:
            nodes.append(_condition(_field(key), value))
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def matches(node: Node | None, payload: Mapping[str, Any]) -> bool:
    """Evaluate a filter on one payload in Python (exact search, post-filtering, tests)."""
    if node is None:
        return True
    if isinstance(node, And):
        return all(matches(item, payload) for item in node.items)
    if isinstance(node, Or):
        return any(matches(item, payload) for item in node.items)
    value = payload.get(node.field)
    if isinstance(node, Eq):
        return _same(value, node.value)
    if isinstance(node, In):
        return any(_same(value, candidate) for candidate in node.values)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return (
        (node.gt is None or value > node.gt)
        and (node.gte is None or value >= node.gte)
        and (node.lt is None or value < node.lt)
        and (node.lte is None or value <= node.lte)
    )


def _same(value: Any, wanted: Scalar) -> bool:
    """Typed equality: True is not the number 1, "1" is not 1 (as in JSON), 1 equals 1.0."""
    return (
        value == wanted and isinstance(value, bool) == isinstance(wanted, bool) and not isinstance(value, (list, dict))
    )

"""One portable metadata filter, translated by each store into its own form.

A filter is a dict, as users write it in Python, JSON or on the command line::

    {"brand": "acme"}                                  # equality
    {"price": {"gte": 10, "lt": 50}}                   # range (gt, gte, lt, lte)
    {"locale": {"in": ["en", "de"]}}                   # membership
    {"brand": {"ne": "acme"}}                          # not equal
    {"locale": {"nin": ["en", "de"]}}                  # not a member
    {"brand": "acme", "price": {"lte": 20}}            # several keys: all must hold
    {"$or": [{"brand": "acme"}, {"brand": "zen"}]}     # $and / $or of filters
    {"$not": {"brand": "acme", "price": {"lt": 5}}}    # negation of a filter

``parse_filter`` turns it into a small tree of nodes; ``ne`` is ``Not(Eq)`` and ``nin`` is
``Not(In)``. A negation holds wherever its filter does not, so a record that lacks the field
matches ``ne`` and ``nin`` (as Qdrant's ``must_not`` does). Store adapters translate the tree
with a :class:`FilterTranslator` (Qdrant ``Filter``, parameterised SQL over JSONB, escaped
Milvus expressions); values are never concatenated into a query language by this module.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

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


@dataclass(frozen=True)
class Not:
    item: Node


Node = Eq | In | Range | And | Or | Not
NODE_TYPES = (Eq, In, Range, And, Or, Not)
CONDITION_OPS = ("eq", "ne", "in", "nin", *RANGE_OPS)


def _scalar(value: Any, where: str) -> Scalar:
    if isinstance(value, (str, bool, int, float)) and not (isinstance(value, float) and value != value):
        return value
    raise InvalidFilterError(f"{where}: value {value!r} must be a string, number or bool")


def _field(name: Any) -> str:
    if not isinstance(name, str) or not name or name.startswith("$"):
        raise InvalidFilterError(f"filter field {name!r} must be a non-empty string not starting with '$'")
    return name


def _members(name: str, op: str, values: Any) -> tuple[Scalar, ...]:
    if not isinstance(values, (list, tuple)) or not values:
        raise InvalidFilterError(f"filter on {name!r}: {op!r} takes a non-empty list, not {values!r}")
    return tuple(_scalar(v, f"filter on {name!r}") for v in values)


def _condition(name: str, spec: Any) -> Node:
    if not isinstance(spec, Mapping):
        return Eq(name, _scalar(spec, f"filter on {name!r}"))
    unknown = set(spec) - set(CONDITION_OPS)
    if unknown or not spec:
        raise InvalidFilterError(
            f"filter on {name!r}: unknown operator(s) {sorted(map(str, unknown)) or '(none)'}; "
            f"known: {', '.join(CONDITION_OPS)}"
        )
    nodes: list[Node] = []
    if "eq" in spec:
        nodes.append(Eq(name, _scalar(spec["eq"], f"filter on {name!r}")))
    if "ne" in spec:
        nodes.append(Not(Eq(name, _scalar(spec["ne"], f"filter on {name!r}"))))
    if "in" in spec:
        nodes.append(In(name, _members(name, "in", spec["in"])))
    if "nin" in spec:
        nodes.append(Not(In(name, _members(name, "nin", spec["nin"]))))
    bounds = {op: spec[op] for op in RANGE_OPS if op in spec}
    if bounds:
        for op, bound in bounds.items():
            if isinstance(bound, bool) or not isinstance(bound, (int, float)) or bound != bound:
                raise InvalidFilterError(f"filter on {name!r}: {op} bound {bound!r} must be a number")
        nodes.append(Range(name, **bounds))
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def parse_filter(spec: Mapping[str, Any] | Node | None) -> Node | None:
    """Validate a portable filter and return its tree (None for no filter)."""
    if spec is None or isinstance(spec, NODE_TYPES):
        return spec
    if not isinstance(spec, Mapping):
        raise InvalidFilterError(f"a filter is a dict, not {type(spec).__name__}")
    nodes: list[Node] = []
    for key, value in spec.items():
        if key in ("$and", "$or"):
            if not isinstance(value, (list, tuple)) or not value:
                raise InvalidFilterError(f"{key} takes a non-empty list of filters")
            items = tuple(_required(item, key) for item in value)
            nodes.append(And(items) if key == "$and" else Or(items))
        elif key == "$not":
            nodes.append(Not(_required(value, key)))
        else:
            nodes.append(_condition(_field(key), value))
    if not nodes:
        return None
    return nodes[0] if len(nodes) == 1 else And(tuple(nodes))


def _required(spec: Any, where: str) -> Node:
    """A filter inside ``$and`` / ``$or`` / ``$not``, which must not be empty."""
    node = parse_filter(spec)
    if node is None:
        raise InvalidFilterError(f"{where} takes non-empty filters, not {spec!r}")
    return node


T = TypeVar("T")


class FilterTranslator(ABC, Generic[T]):
    """One walk over the filter tree: a store's translation implements one method per node type.

    ``translate`` dispatches on the node and recurses into ``And`` / ``Or`` / ``Not`` first,
    so each method receives its children already translated. A new node type is one new
    abstract method here, which every translator must then implement.
    """

    def translate(self, node: Node) -> T:
        """The translation of ``node`` (a parsed filter tree)."""
        if isinstance(node, Eq):
            return self.equals(node)
        if isinstance(node, In):
            return self.member(node)
        if isinstance(node, Range):
            return self.range(node)
        if isinstance(node, And):
            return self.all_of([self.translate(item) for item in node.items])
        if isinstance(node, Or):
            return self.any_of([self.translate(item) for item in node.items])
        if isinstance(node, Not):
            return self.negate(self.translate(node.item))
        raise TypeError(f"not a filter node: {node!r}")

    @abstractmethod
    def equals(self, node: Eq) -> T:
        """The field equals the value (typed: ``True`` is not ``1``, ``"1"`` is not ``1``, ``1`` is ``1.0``)."""

    @abstractmethod
    def member(self, node: In) -> T:
        """The field equals one of the values."""

    @abstractmethod
    def range(self, node: Range) -> T:
        """The field is a number (not a bool) within the bounds."""

    @abstractmethod
    def all_of(self, items: list[T]) -> T:
        """Every translated item holds."""

    @abstractmethod
    def any_of(self, items: list[T]) -> T:
        """At least one translated item holds."""

    @abstractmethod
    def negate(self, item: T) -> T:
        """The translated item does not hold (also where the record lacks its fields)."""


Predicate = Callable[[Mapping[str, Any]], bool]


class _PythonPredicates(FilterTranslator[Predicate]):
    """The reference semantics, as Python predicates over one payload."""

    def equals(self, node: Eq) -> Predicate:
        return lambda payload: _same(payload.get(node.field), node.value)

    def member(self, node: In) -> Predicate:
        return lambda payload: any(_same(payload.get(node.field), wanted) for wanted in node.values)

    def range(self, node: Range) -> Predicate:
        def within(payload: Mapping[str, Any]) -> bool:
            value = payload.get(node.field)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                return False
            return (
                (node.gt is None or value > node.gt)
                and (node.gte is None or value >= node.gte)
                and (node.lt is None or value < node.lt)
                and (node.lte is None or value <= node.lte)
            )

        return within

    def all_of(self, items: list[Predicate]) -> Predicate:
        return lambda payload: all(item(payload) for item in items)

    def any_of(self, items: list[Predicate]) -> Predicate:
        return lambda payload: any(item(payload) for item in items)

    def negate(self, item: Predicate) -> Predicate:
        return lambda payload: not item(payload)


def predicate(node: Node | None) -> Predicate:
    """A filter as a Python predicate over payloads, translated once for many payloads."""
    return (lambda payload: True) if node is None else _PythonPredicates().translate(node)


def matches(node: Node | None, payload: Mapping[str, Any]) -> bool:
    """Evaluate a filter on one payload in Python (exact search, post-filtering, tests): the reference."""
    return predicate(node)(payload)


def _same(value: Any, wanted: Scalar) -> bool:
    """Typed equality: True is not the number 1, "1" is not 1 (as in JSON), 1 equals 1.0."""
    return (
        value == wanted and isinstance(value, bool) == isinstance(wanted, bool) and not isinstance(value, (list, dict))
    )

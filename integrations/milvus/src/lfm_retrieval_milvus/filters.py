"""Portable filters as Milvus boolean expressions over the JSON metadata field.

Milvus 2.3 servers and Milvus Lite 3.x have no expression parameters (``filter_params``
came with Milvus 2.5), so every key and value is written as an escaped literal: strings
double-quoted with ``\\``, ``"``, newline, carriage return and tab escaped (the escapes
both parsers know), numbers in ``repr`` form, booleans as ``true``/``false``. No user text
reaches an expression any other way.

The expressions agree with :func:`lfm_retrieval.stores.filters.matches` on a Milvus
server: equality and membership keep booleans and numbers apart (``1`` equals ``1.0``),
ranges only match numbers. Milvus Lite evaluates with Python's own comparisons
(``True == 1``, ranges match booleans), so there the expression selects a superset and
the store applies ``matches`` to what comes back.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from lfm_retrieval.stores.filters import And, Eq, In, Node, Or, Range, Scalar

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = "1.7976931348623157e+308"
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class Never:
    """An expression that matches no record (the store skips the round trip)."""

    def __repr__(self) -> str:
        return "NEVER"


NEVER = Never()
Expression = str | Never


def string_literal(text: str) -> str:
    """``text`` as a double-quoted Milvus string literal."""
    return '"' + "".join(_ESCAPES.get(char, char) for char in text) + '"'


def _storable(text: str) -> bool:
    """Whether ``text`` can be stored at all (lone surrogates cannot be UTF-8)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def number_literal(value: int | float) -> str | None:
    """A finite number as a Milvus literal; None for one no stored number can reach (inf, 10**400)."""
    if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX:
        return str(value)
    try:
        number = float(value)
    except OverflowError:
        return None
    return repr(number) if math.isfinite(number) else None


def scalar_literal(value: Scalar) -> str | None:
    """A filter value as a literal; None when no stored JSON value can equal it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return string_literal(value) if _storable(value) else None
    return number_literal(value)


def json_path(field: str, key: str) -> str:
    """``field["key"]``: one top-level key of the JSON field."""
    return f"{field}[{string_literal(key)}]"


def _all(items: Iterable[Expression]) -> Expression:
    parts: list[str] = []
    for item in items:
        if isinstance(item, Never):
            return NEVER
        if item not in parts:
            parts.append(item)
    return parts[0] if len(parts) == 1 else " and ".join(f"({part})" for part in parts)


def _any(items: Iterable[Expression]) -> Expression:
    parts = [item for item in dict.fromkeys(items) if not isinstance(item, Never)]
    if not parts:
        return NEVER
    return parts[0] if len(parts) == 1 else " or ".join(f"({part})" for part in parts)


def _kind(value: Scalar) -> str:
    # Milvus refuses an `in` list that mixes kinds (even ints with floats).
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, str):
        return "str"
    return "int" if isinstance(value, int) and INT64_MIN <= value <= INT64_MAX else "float"


class ExpressionBuilder:
    """Translate a filter tree into an expression over the JSON field ``field``.

    ``in_lists``: write membership as ``x in [...]`` (Milvus server) rather than a chain of
    ``x == ...`` (Milvus Lite cannot apply ``in`` to a JSON key).
    """

    def __init__(self, field: str = "metadata", *, in_lists: bool = True) -> None:
        self.field = field
        self.in_lists = in_lists

    def build(self, node: Node | None) -> Expression | None:
        """The expression for ``node``; None for no filter, NEVER when nothing can match."""
        return None if node is None else self._node(node)

    def _node(self, node: Node) -> Expression:
        if isinstance(node, And):
            return _all(self._node(item) for item in node.items)
        if isinstance(node, Or):
            return _any(self._node(item) for item in node.items)
        if not _storable(node.field):
            return NEVER
        path = json_path(self.field, node.field)
        if isinstance(node, Eq):
            literal = scalar_literal(node.value)
            return NEVER if literal is None else f"{path} == {literal}"
        if isinstance(node, In):
            return self._membership(path, node.values)
        if isinstance(node, Range):
            return self._range(path, node)
        raise TypeError(f"not a filter node: {node!r}")

    def _membership(self, path: str, values: tuple[Scalar, ...]) -> Expression:
        groups: dict[str, list[str]] = {}
        for value in values:
            literal = scalar_literal(value)
            if literal is not None and literal not in groups.setdefault(_kind(value), []):
                groups[_kind(value)].append(literal)
        tests: list[Expression] = []
        for literals in groups.values():
            if self.in_lists and len(literals) > 1:
                tests.append(f"{path} in [{', '.join(literals)}]")
            else:
                tests.extend(f"{path} == {literal}" for literal in literals)
        return _any(tests)

    def _range(self, path: str, node: Range) -> Expression:
        # Any number at all: what a bound at -inf (below) or +inf (above) leaves open.
        any_number = f"{path} >= -{_FLOAT_MAX}"
        tests: list[Expression] = []
        for op, symbol in _RANGE_OPS.items():
            bound = getattr(node, op)
            if bound is None:
                continue
            literal = number_literal(bound)
            if literal is not None:
                tests.append(f"{path} {symbol} {literal}")
            elif (bound > 0) == op.startswith("l"):  # x < +inf, x > -inf: every number
                tests.append(any_number)
            else:  # x > +inf, x < -inf: none
                tests.append(NEVER)
        return _all(tests)


def build_expression(node: Node | None, field: str = "metadata", *, in_lists: bool = True) -> Expression | None:
    """Shorthand for ``ExpressionBuilder(field, in_lists=in_lists).build(node)``."""
    return ExpressionBuilder(field, in_lists=in_lists).build(node)

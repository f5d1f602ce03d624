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

A negation is ``not (...)`` on a server, where a record without the key (or with a value of
another type) matches it, as in ``matches``. On Milvus Lite a negation of a superset would be
a subset, so there it selects every record and ``matches`` decides.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from lfm_retrieval.stores.filters import Eq, FilterTranslator, In, Node, Range, Scalar

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
_FLOAT_MAX = "1.7976931348623157e+308"
_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_RANGE_OPS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


class Never:
    """An expression that matches no record (the store skips the round trip)."""

    def __repr__(self) -> str:
        return "NEVER"


class Always:
    """An expression that matches every record (a negated ``NEVER``; ``and`` drops it)."""

    def __repr__(self) -> str:
        return "ALWAYS"


NEVER = Never()
ALWAYS = Always()
Expression = str | Never | Always


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
        if isinstance(item, str) and item not in parts:
            parts.append(item)
    if not parts:
        return ALWAYS
    return parts[0] if len(parts) == 1 else " and ".join(f"({part})" for part in parts)


def _any(items: Iterable[Expression]) -> Expression:
    parts: list[str] = []
    for item in items:
        if isinstance(item, Always):
            return ALWAYS
        if isinstance(item, str) and item not in parts:
            parts.append(item)
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


class ExpressionBuilder(FilterTranslator[Expression]):
    """Translate a filter tree into an expression over the JSON field ``field``.

    ``in_lists``: write membership as ``x in [...]`` (Milvus server) rather than a chain of
    ``x == ...`` (Milvus Lite cannot apply ``in`` to a JSON key).
    ``negations``: write a negation as ``not (...)`` (default: as ``in_lists``). Milvus Lite
    needs False: its expressions select a superset, which ``not`` would turn into a subset,
    so there a negation selects every record and the store's ``matches`` post-filter decides.
    """

    def __init__(self, field: str = "metadata", *, in_lists: bool = True, negations: bool | None = None) -> None:
        self.field = field
        self.in_lists = in_lists
        self.negations = in_lists if negations is None else negations

    def _path(self, field: str) -> str | None:
        return json_path(self.field, field) if _storable(field) else None

    def equals(self, node: Eq) -> Expression:
        path, literal = self._path(node.field), scalar_literal(node.value)
        return NEVER if path is None or literal is None else f"{path} == {literal}"

    def member(self, node: In) -> Expression:
        path = self._path(node.field)
        return NEVER if path is None else self._membership(path, node.values)

    def range(self, node: Range) -> Expression:
        path = self._path(node.field)
        return NEVER if path is None else self._range(path, node)

    def all_of(self, items: list[Expression]) -> Expression:
        return _all(items)

    def any_of(self, items: list[Expression]) -> Expression:
        return _any(items)

    def negate(self, item: Expression) -> Expression:
        if not self.negations:  # `item` may be a superset (even ALWAYS): only "every record" is sure to cover
            return ALWAYS
        if isinstance(item, Never):
            return ALWAYS
        if isinstance(item, Always):
            return NEVER
        return f"not ({item})"

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


def to_filter(node: Node | None, field: str = "metadata", *, in_lists: bool = True) -> Expression | None:
    """The expression for ``node`` over the JSON field ``field`` (see :class:`ExpressionBuilder`).

    None for no filter (or one every record matches), NEVER when no record can match.
    """
    expression = None if node is None else ExpressionBuilder(field, in_lists=in_lists).translate(node)
    return None if isinstance(expression, Always) else expression

"""The portable filter tree as parameterised SQL over the JSONB ``metadata`` column.

Agrees with ``lfm_retrieval.stores.filters.matches``:

* equality and membership are JSON containment (``metadata @> '{"field": value}'``), which
  is typed: ``true`` never equals ``1``, ``"1"`` never equals ``1``, ``1`` equals ``1.0``, and
  a list or object value never equals a scalar. The GIN index on ``metadata`` serves it.
* a range only matches JSON numbers (a CASE keeps strings and booleans out of the cast);
  numbers compare as ``numeric``, bounds are sent as the decimal Python prints, so floats
  compare exactly as they do in Python.

Field names and values are always bind parameters; nothing is spliced into the SQL text.
"""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from lfm_retrieval.stores.filters import And, Eq, In, Node, Or, Range

_FALSE = sql.SQL("false")
_TRUE = sql.SQL("true")
_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def filter_sql(node: Node | None, column: str = "metadata") -> tuple[sql.Composable, list[Any]]:
    """``(condition, params)`` for a WHERE clause; ``true`` for no filter."""
    params: list[Any] = []
    if node is None:
        return _TRUE, params
    return _build(node, sql.Identifier(column), params), params


def _storable(value: Any) -> bool:
    """Whether a value can be stored in JSON at all (infinities cannot, so never match)."""
    return not (isinstance(value, float) and math.isinf(value))


def _contains(column: sql.Identifier, field: str, value: Any, params: list[Any]) -> sql.Composable:
    params.append(Jsonb({field: value}))
    return sql.SQL("{} @> {}").format(column, sql.Placeholder())


def _bound(value: float) -> Decimal | int:
    """A range bound as the exact decimal Python (and ``json.dumps``) writes for it."""
    return value if isinstance(value, int) else Decimal(repr(float(value)))


def _range(column: sql.Identifier, node: Range, params: list[Any]) -> sql.Composable:
    tests: list[sql.Composable] = []
    local: list[Any] = [node.field]  # the jsonb_typeof test comes first in the SQL text
    for op, symbol in _COMPARISONS.items():
        bound = getattr(node, op)
        if bound is None:
            continue
        if math.isinf(bound):
            # x > -inf holds for every number; x > +inf for none (stored JSON has no infinities).
            if (bound > 0) == (op in ("gt", "gte")):
                return _FALSE
            continue
        local += [node.field, _bound(bound)]
        tests.append(
            sql.SQL("({} -> {})::numeric {} {}::numeric").format(
                column, sql.Placeholder(), sql.SQL(symbol), sql.Placeholder()
            )
        )
    params.extend(local)
    comparison = sql.SQL(" AND ").join(tests) if tests else _TRUE
    return sql.SQL("(CASE WHEN jsonb_typeof({} -> {}) = 'number' THEN {} ELSE false END)").format(
        column, sql.Placeholder(), comparison
    )


def _build(node: Node, column: sql.Identifier, params: list[Any]) -> sql.Composable:
    if isinstance(node, (And, Or)):
        parts = [_build(item, column, params) for item in node.items]
        joiner = sql.SQL(" AND ") if isinstance(node, And) else sql.SQL(" OR ")
        return sql.SQL("({})").format(joiner.join(parts))
    if isinstance(node, Eq):
        return _contains(column, node.field, node.value, params) if _storable(node.value) else _FALSE
    if isinstance(node, In):
        values = [value for value in node.values if _storable(value)]
        if not values:
            return _FALSE
        return sql.SQL("({})").format(sql.SQL(" OR ").join(_contains(column, node.field, v, params) for v in values))
    if isinstance(node, Range):
        return _range(column, node, params)
    raise TypeError(f"not a filter node: {node!r}")

"""The portable filter tree as parameterised SQL over the JSONB ``metadata`` column.

Agrees with ``lfm_retrieval.stores.filters.matches``:

* equality and membership are JSON containment (``metadata @> '{"field": value}'``), which
  is typed: ``true`` never equals ``1``, ``"1"`` never equals ``1``, ``1`` equals ``1.0``, and
  a list or object value never equals a scalar. The GIN index on ``metadata`` serves it.
  A float from 2**53 on is integral and looked up as that integer, as payloads store it
  (:func:`lfm_retrieval_pgvector.rows.payload_json`), so ``2**60`` and ``2.0**60`` each match both.
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

from lfm_retrieval.stores.filters import Eq, FilterTranslator, In, Node, Range
from lfm_retrieval_pgvector.rows import exact_number

_TRUE = sql.SQL("true")
_COMPARISONS = {"gt": ">", "gte": ">=", "lt": "<", "lte": "<="}


def to_filter(node: Node | None, column: str = "metadata") -> tuple[sql.Composable, list[Any]]:
    """``(condition, params)`` for a WHERE clause; ``true`` for no filter."""
    if node is None:
        return _TRUE, []
    return SqlFilters().translate(node).apply(sql.Identifier(column))


def _storable(value: Any) -> bool:
    """Whether a value can be stored in JSON at all (infinities cannot, so never match)."""
    return not (isinstance(value, float) and math.isinf(value))


class Fragment:
    """A condition whose SQL text is built once the column is known, with its parameters in text order."""

    def __init__(self, template: str, *parts: Fragment | Any, params: tuple[Any, ...] = ()) -> None:
        self.template, self.parts, self.params = template, parts, params

    def apply(self, column: sql.Identifier) -> tuple[sql.Composable, list[Any]]:
        """``(condition, params)`` over ``column``; ``{column}`` in the template names it."""
        params: list[Any] = []
        composed = self._compose(column, params)
        return composed, params

    def _compose(self, column: sql.Identifier, params: list[Any]) -> sql.Composable:
        params.extend(self.params)
        parts = [part._compose(column, params) if isinstance(part, Fragment) else part for part in self.parts]
        return sql.SQL(self.template).format(*parts, column=column)


_NEVER = Fragment("false")


def _joined(items: list[Fragment], joiner: str) -> Fragment:
    if len(items) == 1:
        return items[0]
    return Fragment("(" + f" {joiner} ".join("{}" for _ in items) + ")", *items)


def _contains(field: str, value: Any) -> Fragment:
    return Fragment("{column} @> {}", sql.Placeholder(), params=(Jsonb({field: exact_number(value)}),))


def _bound(value: float) -> Decimal | int:
    """A range bound as the exact decimal Python (and ``json.dumps``) writes for it."""
    return value if isinstance(value, int) else Decimal(repr(float(value)))


class SqlFilters(FilterTranslator[Fragment]):
    """The portable tree as parameterised SQL over a JSONB column (see the module's notes)."""

    def equals(self, node: Eq) -> Fragment:
        return _contains(node.field, node.value) if _storable(node.value) else _NEVER

    def member(self, node: In) -> Fragment:
        values = [value for value in node.values if _storable(value)]
        return _joined([_contains(node.field, v) for v in values], "OR") if values else _NEVER

    def range(self, node: Range) -> Fragment:
        tests: list[Fragment] = []
        for op, symbol in _COMPARISONS.items():
            bound = getattr(node, op)
            if bound is None:
                continue
            if math.isinf(bound):
                # x > -inf holds for every number; x > +inf for none (stored JSON has no infinities).
                if (bound > 0) == (op in ("gt", "gte")):
                    return _NEVER
                continue
            tests.append(
                Fragment(
                    "({column} -> {})::numeric " + symbol + " {}::numeric",
                    sql.Placeholder(),
                    sql.Placeholder(),
                    params=(node.field, _bound(bound)),
                )
            )
        comparison = _joined(tests, "AND") if tests else Fragment("true")
        return Fragment(
            "(CASE WHEN jsonb_typeof({column} -> {}) = 'number' THEN {} ELSE false END)",
            sql.Placeholder(),
            comparison,
            params=(node.field,),
        )

    def all_of(self, items: list[Fragment]) -> Fragment:
        return _joined(items, "AND")

    def any_of(self, items: list[Fragment]) -> Fragment:
        return _joined(items, "OR")

    def negate(self, item: Fragment) -> Fragment:
        return Fragment("(({}) IS NOT TRUE)", item)

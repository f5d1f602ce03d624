"""Translate the portable filter tree into a Qdrant ``models.Filter``.

Values travel as typed model fields (``MatchValue``, ``MatchAny``, ``Range``), never
as query text, so a hostile key or value is just a name or string that matches nothing.
The translation keeps the portable semantics of ``lfm_retrieval.stores.matches``:

* a string or bool equals only that string or bool (``MatchValue``);
* a number equals any number of that value, int or float, as in JSON and Python
  (``3`` matches ``3.0``, ``10**16`` matches ``1e16``), and never a bool. Qdrant's integer
  ``MatchValue`` matches integer payloads only, and it has no float match, so
  :func:`number_equality` plans each number once for both engines' classes:

  - a number some float equals is a closed ``Range`` on that float. The engine compares
    an integer payload as a float, so from 2**53 on the range also holds the integers
    that round to it (``2**53 + 1`` rounds to ``2**53``): those are excluded by an integer
    ``MatchAny`` under ``must_not`` (at most about a thousand of them, and only for a
    value a float holds exactly, which an id-like integer seldom is);
  - an integer no float equals (``2**53 + 1``) is an integer ``MatchValue`` / ``MatchAny``:
    only an integer payload can equal it;
* membership splits its values by type into the same conditions, joined by ``should``;
* ``And`` is ``must``, ``Or`` is ``should`` (at least one), ``Not`` is ``must_not`` (which
  a point without the field satisfies, as the portable form wants).

One difference stays: Qdrant matches a condition against each element of an array
value, while the portable form compares whole values; keep filtered fields scalar.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from qdrant_client import models

from lfm_retrieval.stores.filters import Eq, FilterTranslator, In, Node, Range, Scalar
from lfm_retrieval_qdrant.layout import field_path

#: Floats hold every integer of smaller magnitude exactly, and no other integer rounds to one of them.
FLOAT_EXACT = 2**53
#: Qdrant's payload integers are int64.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


@dataclass(frozen=True)
class NumberEquality:
    """How Qdrant finds the payloads equal to one number: ``integer`` (an exact integer match)
    when no float equals it, else the closed range on ``float_value`` without the integers
    in ``excluded`` (which the engine would round into the range)."""

    integer: int | None = None
    float_value: float | None = None
    excluded: tuple[int, ...] = ()


def _rounding_to(value: float) -> tuple[int, ...]:
    """The int64 integers other than ``value`` that round to the float ``value`` (none below 2**53)."""
    if abs(value) < FLOAT_EXACT or math.isinf(value):
        return ()
    low = math.floor((value + math.nextafter(value, -math.inf)) / 2)
    high = math.ceil((value + math.nextafter(value, math.inf)) / 2)
    exact = int(value)
    start, stop = max(low - 1, INT64_MIN), min(high + 1, INT64_MAX)
    return tuple(n for n in range(start, stop + 1) if n != exact and float(n) == value)


def number_equality(value: int | float) -> NumberEquality:
    """The plan of an equality on the number ``value`` (not a bool), whether stored as int or float
    (neither ``integer`` nor ``float_value`` for an integer no payload can hold: nothing equals it)."""
    if isinstance(value, int) and float(value) != value:  # beyond 2**53 and no float equals it
        return NumberEquality(integer=value) if INT64_MIN <= value <= INT64_MAX else NumberEquality()
    as_float = float(value)
    return NumberEquality(float_value=as_float, excluded=_rounding_to(as_float) if as_float.is_integer() else ())


def _is_number(value: Scalar) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number_condition(path: str, value: int | float) -> models.Condition:
    plan = number_equality(value)
    if plan.integer is not None:
        return models.FieldCondition(key=path, match=models.MatchValue(value=plan.integer))
    if plan.float_value is None:  # an integer neither a payload integer nor a float can hold
        return models.FieldCondition(key=path, match=models.MatchAny(any=[]))
    equal = models.FieldCondition(key=path, range=models.Range(gte=plan.float_value, lte=plan.float_value))
    if not plan.excluded:
        return equal
    other = models.FieldCondition(key=path, match=models.MatchAny(any=list(plan.excluded)))
    return models.Filter(must=[equal], must_not=[other])


def _equals(path: str, value: Scalar) -> models.Condition:
    if _is_number(value):
        return _number_condition(path, value)  # type: ignore[arg-type]
    return models.FieldCondition(key=path, match=models.MatchValue(value=value))


def membership(values: tuple[Scalar, ...]) -> tuple[list[str], list[int], list[bool], list[float]]:
    """An ``in`` list split by how Qdrant matches it: strings, integers no float equals (exact
    integer matches), bools, and the numbers matched by a range (:func:`number_equality`)."""
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    bools = list(dict.fromkeys(v for v in values if isinstance(v, bool)))
    plans = [number_equality(v) for v in dict.fromkeys(v for v in values if _is_number(v))]  # type: ignore[arg-type]
    integers = [plan.integer for plan in plans if plan.integer is not None]
    return strings, integers, bools, [plan.float_value for plan in plans if plan.float_value is not None]


def _member(path: str, values: tuple[Scalar, ...]) -> models.Condition:
    strings, integers, bools, floats = membership(values)
    conditions: list[models.Condition] = []
    for group in (strings, integers):
        if group:
            match = models.MatchAny(any=group) if len(group) > 1 else models.MatchValue(value=group[0])
            conditions.append(models.FieldCondition(key=path, match=match))
    conditions.extend(_equals(path, v) for v in bools)
    conditions.extend(_number_condition(path, v) for v in floats)
    if not conditions:  # integers no payload can hold: nothing equals them
        return models.FieldCondition(key=path, match=models.MatchAny(any=[]))
    return conditions[0] if len(conditions) == 1 else models.Filter(should=conditions)


class QdrantFilters(FilterTranslator[models.Condition]):
    """The portable tree as Qdrant conditions (field conditions or nested filters)."""

    def equals(self, node: Eq) -> models.Condition:
        return _equals(field_path(node.field), node.value)

    def member(self, node: In) -> models.Condition:
        return _member(field_path(node.field), node.values)

    def range(self, node: Range) -> models.Condition:
        bounds = models.Range(gt=node.gt, gte=node.gte, lt=node.lt, lte=node.lte)
        return models.FieldCondition(key=field_path(node.field), range=bounds)

    def all_of(self, items: list[models.Condition]) -> models.Condition:
        return models.Filter(must=items)

    def any_of(self, items: list[models.Condition]) -> models.Condition:
        return models.Filter(should=items)

    def negate(self, item: models.Condition) -> models.Condition:
        return models.Filter(must_not=[item])


def to_filter(node: Node | None) -> models.Filter | None:
    """The ``models.Filter`` of a parsed portable filter (None for no filter)."""
    if node is None:
        return None
    translated = QdrantFilters().translate(node)
    return translated if isinstance(translated, models.Filter) else models.Filter(must=[translated])

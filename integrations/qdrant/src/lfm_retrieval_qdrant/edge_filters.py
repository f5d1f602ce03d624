"""Translate the portable filter tree into qdrant-edge's own ``Filter`` (Qdrant's engine in-process).

The same semantics as :mod:`lfm_retrieval_qdrant.filters` (the server path) in the
engine's classes, written once from the portable tree:

* a string equals only that string (``MatchValue``);
* a bool equals only that bool: ``MatchValue(numpy.bool_)``, because qdrant-edge-py 0.9
  reads a Python ``True`` as the integer 1 (``bool`` is an ``int`` subclass) and would then
  match neither ``true`` nor only ``true``; a numpy bool reaches the engine as a bool;
* a number equals any number of that value, int or float (``3`` matches ``3.0``, ``10**16``
  matches ``1e16``), never a bool: the plan of
  :func:`lfm_retrieval_qdrant.filters.number_equality` (a closed ``RangeFloat`` without the
  integers that round into it, or an integer ``MatchValue`` for an integer no float equals);
* membership splits its values into the same conditions, joined by ``should``;
* ``And`` is ``must``, ``Or`` is ``should``, ``Not`` is ``must_not`` (a point without the field satisfies it).

As on a server, a condition matches each element of an array value; keep filtered fields scalar.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import qdrant_edge as qe

from lfm_retrieval.stores.filters import Eq, FilterTranslator, In, Node, Range, Scalar
from lfm_retrieval_qdrant.filters import membership, number_equality
from lfm_retrieval_qdrant.layout import field_path


def _number_condition(path: str, value: int | float) -> Any:
    plan = number_equality(value)
    if plan.integer is not None:
        return qe.FieldCondition(key=path, match=qe.MatchValue(plan.integer))
    if plan.float_value is None:  # an integer neither a payload integer nor a float can hold
        return qe.FieldCondition(key=path, match=qe.MatchAny([]))
    equal = qe.FieldCondition(key=path, range=qe.RangeFloat(gte=plan.float_value, lte=plan.float_value))
    if not plan.excluded:
        return equal
    return qe.Filter(must=[equal], must_not=[qe.FieldCondition(key=path, match=qe.MatchAny(list(plan.excluded)))])


def _equals(path: str, value: Scalar) -> Any:
    if isinstance(value, bool):
        return qe.FieldCondition(key=path, match=qe.MatchValue(np.bool_(value)))
    if isinstance(value, str):
        return qe.FieldCondition(key=path, match=qe.MatchValue(value))
    return _number_condition(path, value)


def _member(path: str, values: tuple[Scalar, ...]) -> Any:
    strings, integers, bools, floats = membership(values)
    conditions: list[Any] = []
    for group in (strings, integers):
        if group:
            match = qe.MatchAny(group) if len(group) > 1 else qe.MatchValue(group[0])
            conditions.append(qe.FieldCondition(key=path, match=match))
    conditions.extend(_equals(path, v) for v in bools)
    conditions.extend(_number_condition(path, v) for v in floats)
    if not conditions:  # integers no payload can hold: nothing equals them
        return qe.FieldCondition(key=path, match=qe.MatchAny([]))
    return conditions[0] if len(conditions) == 1 else qe.Filter(should=conditions)


def _bound(value: float | None) -> float | None:
    return None if value is None else float(value)


class EdgeFilters(FilterTranslator[Any]):
    """The portable tree as qdrant-edge conditions (field conditions or nested filters)."""

    def equals(self, node: Eq) -> Any:
        return _equals(field_path(node.field), node.value)

    def member(self, node: In) -> Any:
        return _member(field_path(node.field), node.values)

    def range(self, node: Range) -> Any:
        bounds = {"gt": node.gt, "gte": node.gte, "lt": node.lt, "lte": node.lte}
        return qe.FieldCondition(
            key=field_path(node.field), range=qe.RangeFloat(**{k: _bound(v) for k, v in bounds.items()})
        )

    def all_of(self, items: list[Any]) -> Any:
        return qe.Filter(must=items)

    def any_of(self, items: list[Any]) -> Any:
        return qe.Filter(should=items)

    def negate(self, item: Any) -> Any:
        return qe.Filter(must_not=[item])


def to_filter(node: Node | None) -> Any:
    """The ``qdrant_edge.Filter`` of a parsed portable filter (None for no filter)."""
    if node is None:
        return None
    translated = EdgeFilters().translate(node)
    return translated if isinstance(translated, qe.Filter) else qe.Filter(must=[translated])

"""Translate the portable filter tree into a Qdrant ``models.Filter``.

Values travel as typed model fields (``MatchValue``, ``MatchAny``, ``Range``), never
as query text, so a hostile key or value is just a name or string that matches nothing.
The translation keeps the portable semantics of ``lfm_retrieval.stores.matches``:

* a string or bool equals only that string or bool (``MatchValue``);
* a number below 2**53 in magnitude equals any number of that value, int or float
  (``3`` matches ``3.0``), and never a bool: a closed ``Range`` (Qdrant's integer
  ``MatchValue`` would miss ``3.0``, and it has no float match); every integer a payload
  can hold converts to a float exactly up to 2**53, so the range is exact there;
* an integral number from 2**53 on (up to int64, Qdrant's payload integers) is an integer
  ``MatchValue`` / ``MatchAny``, exact for every integer: a float range would also match
  the neighbouring integers that round to the same float (``2**53 + 1`` to ``2**53``).
  A float payload of such an integral value is not matched by it (floats that large are
  not ids; keep such fields integers);
* membership splits its values by type into the same conditions, joined by ``should``;
* ``And`` is ``must``, ``Or`` is ``should`` (at least one), ``Not`` is ``must_not`` (which
  a point without the field satisfies, as the portable form wants).

One difference stays: Qdrant matches a condition against each element of an array
value, while the portable form compares whole values; keep filtered fields scalar.
"""

from __future__ import annotations

from qdrant_client import models

from lfm_retrieval.stores.filters import Eq, FilterTranslator, In, Node, Range, Scalar
from lfm_retrieval_qdrant.layout import field_path

#: Floats hold every integer of smaller magnitude exactly.
FLOAT_EXACT = 2**53
INT64_MAX = 2**63 - 1


def _large_integer(value: Scalar) -> int | None:
    """``value`` as an int when it is an integral number from 2**53 on that a payload integer (int64) can equal."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not value.is_integer():
        return None
    return int(value) if FLOAT_EXACT <= abs(value) <= INT64_MAX else None


def _equals(path: str, value: Scalar) -> models.Condition:
    if isinstance(value, (str, bool)):
        return models.FieldCondition(key=path, match=models.MatchValue(value=value))
    if (integer := _large_integer(value)) is not None:
        return models.FieldCondition(key=path, match=models.MatchValue(value=integer))
    return models.FieldCondition(key=path, range=models.Range(gte=value, lte=value))


def _match(path: str, values: list[str] | list[int]) -> models.Condition:
    match = models.MatchAny(any=values) if len(values) > 1 else models.MatchValue(value=values[0])
    return models.FieldCondition(key=path, match=match)


def _member(path: str, values: tuple[Scalar, ...]) -> models.Condition:
    strings = list(dict.fromkeys(v for v in values if isinstance(v, str)))
    integers = list(dict.fromkeys(i for v in values if (i := _large_integer(v)) is not None))
    # keyed by type too: True == 1 in Python, but a bool and a number are different values here
    others = [
        v
        for _, v in dict.fromkeys(
            (isinstance(v, bool), v) for v in values if not isinstance(v, str) and _large_integer(v) is None
        )
    ]
    conditions = [_match(path, group) for group in (strings, integers) if group]
    conditions.extend(_equals(path, v) for v in others)
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


def to_qdrant(node: Node | None) -> models.Filter | None:
    """The ``models.Filter`` of a parsed portable filter (None for no filter)."""
    if node is None:
        return None
    translated = QdrantFilters().translate(node)
    return translated if isinstance(translated, models.Filter) else models.Filter(must=[translated])

"""Helpers for the tests that compare the Qdrant adapter with Qdrant's real engine (qdrant-edge-py)."""

from __future__ import annotations

from qdrant_client import models


def edge_filter(flt: models.Filter | None):
    """The same filter in qdrant-edge's own classes (the adapter's translation, unchanged)."""
    import qdrant_edge as qe

    def condition(c):
        if isinstance(c, models.Filter):
            return edge_filter(c)
        assert isinstance(c, models.FieldCondition), c
        if isinstance(c.match, models.MatchValue):
            return qe.FieldCondition(key=c.key, match=qe.MatchValue(c.match.value))
        if isinstance(c.match, models.MatchAny):
            return qe.FieldCondition(key=c.key, match=qe.MatchAny(list(c.match.any)))
        r = c.range
        return qe.FieldCondition(key=c.key, range=qe.RangeFloat(gte=r.gte, gt=r.gt, lte=r.lte, lt=r.lt))

    if flt is None:
        return None
    return qe.Filter(
        must=[condition(c) for c in flt.must] if flt.must else None,
        should=[condition(c) for c in flt.should] if flt.should else None,
        must_not=[condition(c) for c in flt.must_not] if flt.must_not else None,
    )

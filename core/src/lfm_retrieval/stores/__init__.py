"""The store protocol: one interface for every vector database, opened from a URI."""

from lfm_retrieval.stores.base import DenseStore, FilterSpec
from lfm_retrieval.stores.filters import And, Eq, In, Node, Or, Range, matches, parse_filter
from lfm_retrieval.stores.records import CollectionSpec, Hit, Record, stable_id, validate_records
from lfm_retrieval.stores.registry import DEFAULT_STORE_URI, ENTRY_POINT_GROUP, available_schemes, open_store

__all__ = [
    "DEFAULT_STORE_URI",
    "ENTRY_POINT_GROUP",
    "And",
    "CollectionSpec",
    "DenseStore",
    "Eq",
    "FilterSpec",
    "Hit",
    "In",
    "Node",
    "Or",
    "Range",
    "Record",
    "available_schemes",
    "matches",
    "open_store",
    "parse_filter",
    "stable_id",
    "validate_records",
]

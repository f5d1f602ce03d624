"""The store protocol: one interface for every vector database, opened from a URI."""

from lfm_retrieval.stores.base import DenseStore, FilterSpec, HybridStore, MultiVectorStore, Store, TokenVectors
from lfm_retrieval.stores.filters import And, Eq, In, Node, Or, Range, matches, parse_filter
from lfm_retrieval.stores.records import (
    AnySpec,
    CollectionSpec,
    Hit,
    HybridSpec,
    Record,
    spec_from_metadata,
    stable_id,
    validate_records,
)
from lfm_retrieval.stores.registry import DEFAULT_STORE_URI, ENTRY_POINT_GROUP, KINDS, available_schemes, open_store

__all__ = [
    "DEFAULT_STORE_URI",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "And",
    "AnySpec",
    "CollectionSpec",
    "DenseStore",
    "Eq",
    "FilterSpec",
    "Hit",
    "HybridSpec",
    "HybridStore",
    "In",
    "MultiVectorStore",
    "Node",
    "Or",
    "Range",
    "Record",
    "Store",
    "TokenVectors",
    "available_schemes",
    "matches",
    "open_store",
    "parse_filter",
    "spec_from_metadata",
    "stable_id",
    "validate_records",
]

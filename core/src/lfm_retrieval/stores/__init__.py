"""The store protocol: one interface for every vector database, opened from a URI."""

from lfm_retrieval.stores.base import DenseStore, FilterSpec, HybridStore, MultiVectorStore, Store, TokenVectors
from lfm_retrieval.stores.copy import CopyReport, copy_collection, copy_uri
from lfm_retrieval.stores.filters import And, Eq, In, Node, Or, Range, matches, parse_filter
from lfm_retrieval.stores.records import (
    AnySpec,
    CollectionSpec,
    Hit,
    HybridSpec,
    Record,
    check_payload,
    spec_from_metadata,
    stable_id,
    validate_records,
)
from lfm_retrieval.stores.registry import (
    DEFAULT_STORE_GROUP,
    ENTRY_POINT_GROUP,
    KINDS,
    available_schemes,
    default_store_uri,
    open_store,
    serves,
)

__all__ = [
    "DEFAULT_STORE_GROUP",
    "ENTRY_POINT_GROUP",
    "KINDS",
    "And",
    "AnySpec",
    "CollectionSpec",
    "CopyReport",
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
    "check_payload",
    "copy_collection",
    "copy_uri",
    "default_store_uri",
    "matches",
    "open_store",
    "parse_filter",
    "serves",
    "spec_from_metadata",
    "stable_id",
    "validate_records",
]

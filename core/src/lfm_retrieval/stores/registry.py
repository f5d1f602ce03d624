"""Open any installed store from a URI; adapters register through an entry-point group."""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any
from urllib.parse import urlsplit

from lfm_retrieval.stores.base import Store

ENTRY_POINT_GROUP = "lfm_retrieval.stores"
# The embedded default: no server needed.
DEFAULT_STORE_URI = "qdrant+local://./lfm-index/products"
# Which distribution provides each scheme, for the 'not installed' message.
_PROVIDERS = {
    "qdrant": "lfm-retrieval-qdrant",
    "qdrant+local": "lfm-retrieval-qdrant",
    "qdrant+https": "lfm-retrieval-qdrant",
    "postgresql": "lfm-retrieval-pgvector",
    "postgres": "lfm-retrieval-pgvector",
    "milvus": "lfm-retrieval-milvus",
    "milvus+lite": "lfm-retrieval-milvus",
    "plaid": "lfm-retrieval-plaid",
}


def available_schemes() -> list[str]:
    """URI schemes of the store adapters installed in this environment."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


KINDS = ("dense", "multivector", "hybrid")


def open_store(uri: str = DEFAULT_STORE_URI, *, kind: str = "dense", **options: Any) -> Store:
    """Open the store a URI names, e.g. ``qdrant+local://./index/products``,
    ``qdrant://host:6333/products``, ``postgresql://user@host/db?table=products``,
    ``milvus://host:19530/products``, ``plaid://./plaid/products``.

    ``kind`` picks the collection kind: "dense" (a :class:`DenseStore`), "multivector"
    (a :class:`MultiVectorStore`, ColBERT MaxSim) or "hybrid" (a :class:`HybridStore`);
    an adapter that does not serve a kind says so. ``options`` go to the adapter."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {kind!r}")
    scheme = urlsplit(uri).scheme
    if not scheme:
        raise ValueError(f"store URI {uri!r} has no scheme (e.g. qdrant+local://./index/products)")
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if not found:
        hint = f"; pip install {_PROVIDERS[scheme]}" if scheme in _PROVIDERS else ""
        installed = ", ".join(available_schemes()) or "none"
        raise ValueError(f"no store adapter for {scheme!r} in {uri!r} (installed: {installed}){hint}")
    return found[0].load()(uri, kind=kind, **options)

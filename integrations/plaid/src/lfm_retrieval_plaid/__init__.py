"""A PLAID index (PyLate's fast-plaid engine) for ColBERT token vectors, behind the multivector protocol.

``lfm_retrieval.open_store("plaid://./plaid/products", kind="multivector")`` finds this
package through the ``lfm_retrieval.stores`` entry point and calls :func:`from_uri`. PyLate /
fast-plaid (and torch) are imported only when an index is built or searched, so importing
this package never needs them.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from lfm_retrieval.stores import serves
from lfm_retrieval_plaid.store import DB_NAME, INDEX_DIR, PlaidMultiVectorStore

__all__ = ["DB_NAME", "INDEX_DIR", "PlaidMultiVectorStore", "folder_of", "from_uri"]

_INT_OPTIONS = (
    "plaid_min_documents",
    "rerank_depth",
    "nbits",
    "kmeans_niters",
    "max_points_per_centroid",
    "n_samples_kmeans",
    "n_ivf_probe",
    "n_full_scores",
    "seed",
)
_BOOL_OPTIONS = ("rerank",)
_STR_OPTIONS = ("device",)


def folder_of(uri: str) -> str:
    """The folder a ``plaid://`` URI names: ``plaid://./plaid/products`` -> ``./plaid/products``,
    ``plaid:///abs/folder/name`` -> ``/abs/folder/name``."""
    parts = urlsplit(uri)
    if parts.scheme != "plaid":
        raise ValueError(f"not a plaid:// URI: {uri!r}")
    folder = unquote(parts.netloc + parts.path)
    if not folder or folder in ("/", "."):
        raise ValueError(f"{uri!r} names no folder (e.g. plaid://./plaid/products or plaid:///abs/plaid/products)")
    return folder


def _option(name: str, value: str, uri: str) -> Any:
    if name in _INT_OPTIONS:
        try:
            return int(value)
        except ValueError:
            raise ValueError(f"{uri!r}: option {name}={value!r} must be an integer") from None
    if name in _BOOL_OPTIONS:
        if value.lower() not in ("1", "0", "true", "false", "yes", "no"):
            raise ValueError(f"{uri!r}: option {name}={value!r} must be true or false")
        return value.lower() in ("1", "true", "yes")
    if name in _STR_OPTIONS:
        return value
    known = ", ".join((*_INT_OPTIONS, *_BOOL_OPTIONS, *_STR_OPTIONS))
    raise ValueError(f"{uri!r}: unknown option {name!r} (known: {known})")


@serves("multivector")
def from_uri(uri: str, *, kind: str = "dense", **options: Any) -> PlaidMultiVectorStore:
    """``plaid://./relative/folder`` or ``plaid:///absolute/folder``; PLAID serves ``kind="multivector"`` only.

    Settings come from the query string (``?plaid_min_documents=500&n_ivf_probe=16``) or
    ``options`` (which win); see :class:`PlaidMultiVectorStore`.
    """
    settings = {name: _option(name, value, uri) for name, value in parse_qsl(urlsplit(uri).query)}
    settings.update(options)
    return PlaidMultiVectorStore(folder_of(uri), uri=uri, **settings)

"""Open any installed store from a URI; adapters register through an entry-point group."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable
from importlib.metadata import EntryPoint, PackageNotFoundError, entry_points, version
from typing import Any
from urllib.parse import urlsplit

from packaging.requirements import Requirement

from lfm_retrieval.errors import StorePluginError
from lfm_retrieval.stores.base import Store
from lfm_retrieval.stores.kinds import KINDS, StoreKind

ENTRY_POINT_GROUP = "lfm_retrieval.stores"
#: Where an adapter offers the default store: a URI template with ``{folder}`` and ``{collection}``.
DEFAULT_STORE_GROUP = "lfm_retrieval.default_store"


def available_schemes() -> list[str]:
    """URI schemes of the store adapters installed in this environment."""
    return sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))


Opener = Callable[..., Store]


def serves(*kinds: str) -> Callable[[Opener], Opener]:
    """Declare the collection kinds an adapter's ``from_uri`` serves (decorator).

    The wrapped opener refuses any other kind the same way for every adapter, before it
    connects to anything, whether it is called directly or through :func:`open_store`."""
    unknown = set(kinds) - set(KINDS)
    if unknown or not kinds:
        raise ValueError(f"an adapter serves some of {', '.join(KINDS)}, not {sorted(unknown) or 'none'}")

    def declare(opener: Opener) -> Opener:
        @functools.wraps(opener)
        def checked(uri: str, *, kind: str = "dense", **options: Any) -> Store:
            kind = StoreKind.of(kind).value  # the plain string, for the adapter
            if kind not in kinds:
                raise ValueError(
                    f"{uri!r}: this store serves {' and '.join(kinds)} collections, not {kind} ones "
                    "(open_store(uri, kind=...))"
                )
            return opener(uri, kind=kind, **options)

        checked.kinds = kinds  # type: ignore[attr-defined]
        return checked

    return declare


def default_store_uri(folder: str = "./lfm-index", collection: str = "products") -> str:
    """The default store's URI for ``folder`` and ``collection``: the embedded store an installed adapter
    offers in the ``lfm_retrieval.default_store`` entry points (``lfm-retrieval-qdrant``: Qdrant's engine
    in-process); the first by name where several do. LookupError, saying what to install, where none does."""
    offered = sorted(entry_points(group=DEFAULT_STORE_GROUP), key=lambda ep: ep.name)
    if not offered:
        raise LookupError(
            "no store URI given and no installed adapter offers a default store: "
            "pip install 'lfm-retrieval-qdrant[edge]' (an embedded store), or name a store URI"
        )
    return str(load_adapter(offered[0])).format(folder=folder, collection=collection)


def open_store(uri: str | None = None, *, kind: str = "dense", **options: Any) -> Store:
    """Open the store a URI names, e.g. ``qdrant+edge://./index/products`` (embedded),
    ``qdrant+local://./index/products``,
    ``qdrant://host:6333/products``, ``postgresql://user@host/db?table=products``,
    ``milvus://host:19530/products``, ``plaid://./plaid/products``; without one, the default store
    in ``./lfm-index/products`` (:func:`default_store_uri`).

    ``kind`` picks the collection kind: "dense" (a :class:`DenseStore`), "multivector"
    (a :class:`MultiVectorStore`, ColBERT MaxSim) or "hybrid" (a :class:`HybridStore`);
    an adapter that does not serve a kind refuses it (see :func:`serves`). ``options`` go
    to the adapter."""
    kind = StoreKind.of(kind).value
    uri = default_store_uri() if uri is None else uri
    scheme = urlsplit(uri).scheme
    if not scheme:
        raise ValueError(f"store URI {uri!r} has no scheme (e.g. qdrant+edge://./index/products)")
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == scheme]
    if not found:
        installed = ", ".join(available_schemes()) or "none"
        raise ValueError(
            f"no store adapter for {scheme!r} in {uri!r} (installed: {installed}); "
            f"install the distribution that registers it in the {ENTRY_POINT_GROUP!r} entry points"
        )
    return load_adapter(found[0])(uri, kind=kind, **options)


def load_adapter(entry_point: EntryPoint) -> Any:
    """The adapter an entry point names, or StorePluginError (one line) if its distribution fails to import."""
    try:
        return entry_point.load()
    except Exception as exc:  # an adapter's import can fail in any way (ImportError, AttributeError, ...)
        dist = entry_point.dist
        name = f"{dist.name} {dist.version}" if dist is not None else entry_point.value
        cause = re.sub(r"\s+", " ", f"{type(exc).__name__}: {exc}").strip()
        raise StorePluginError(
            f"store adapter {entry_point.name!r} ({name}, {entry_point.value}) failed to import: {cause}; "
            f"installed: {_installed(dist)}"
        ) from exc


def _installed(dist: Any) -> str:
    """``name version`` of each installed distribution ``dist`` requires (its declared ranges)."""
    if dist is None:
        return "unknown"
    found = []
    for line in dist.requires or []:
        requirement = Requirement(line)
        if requirement.marker is not None and "extra" in str(requirement.marker):
            continue
        try:
            found.append(f"{requirement.name} {version(requirement.name)} (wants {requirement.specifier or 'any'})")
        except PackageNotFoundError:
            found.append(f"{requirement.name} missing (wants {requirement.specifier or 'any'})")
    return ", ".join(found) or "no dependencies"

"""Parse the store URIs this package answers to into where to connect and which collection."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

LOCAL_SCHEME = "qdrant+local"
EDGE_SCHEME = "qdrant+edge"
SERVER_SCHEMES = {"qdrant": False, "qdrant+http": False, "qdrant+https": True}
DEFAULT_PORT = 6333
IN_MEMORY = ":memory:"


@dataclass(frozen=True)
class QdrantTarget:
    """Where a collection lives: a local folder (or ``:memory:``) or a server, and its name."""

    uri: str
    collection: str
    folder: str | None = None
    host: str | None = None
    port: int = DEFAULT_PORT
    https: bool = False
    #: A folder of Qdrant's own engine in-process (qdrant-edge), not qdrant-client's local mode.
    edge: bool = False

    @property
    def is_local(self) -> bool:
        return self.folder is not None

    @property
    def where(self) -> str:
        """The location to name in messages (no credentials ever appear in it)."""
        if self.folder is not None:
            return self.folder
        return f"{'https' if self.https else 'http'}://{self.host}:{self.port}"


def parse_uri(uri: str) -> QdrantTarget:
    """``qdrant+edge://<folder>/<collection>``, ``qdrant+local://<folder>/<collection>``,
    ``qdrant://host:port/<collection>``,
    ``qdrant+https://host:port/<collection>`` (``qdrant+http://`` is ``qdrant://``).

    A local folder may be relative (``qdrant+local://./index/products``), absolute
    (``qdrant+local:///srv/index/products``) or ``:memory:`` (``qdrant+local://:memory:/products``;
    local mode only). An edge collection lives in the folder ``<folder>/<collection>``.
    """
    parts = urlsplit(uri)
    scheme = parts.scheme.lower()
    if scheme in (LOCAL_SCHEME, EDGE_SCHEME):
        location = unquote(parts.netloc + parts.path)
        folder, _, name = location.rstrip("/").rpartition("/")
        if not folder or not name:
            raise ValueError(f"{uri!r}: expected {scheme}://<folder>/<collection>")
        if folder == IN_MEMORY and scheme == EDGE_SCHEME:
            raise ValueError(f"{uri!r}: Qdrant Edge keeps its collections in a folder; {IN_MEMORY} is local mode's")
        if folder != IN_MEMORY:
            folder = os.path.realpath(os.path.expanduser(folder))
        return QdrantTarget(uri=uri, collection=name, folder=folder, edge=scheme == EDGE_SCHEME)
    if scheme in SERVER_SCHEMES:
        name = unquote(parts.path.strip("/"))
        if not parts.hostname or not name or "/" in name:
            raise ValueError(f"{uri!r}: expected {scheme}://host:port/<collection>")
        try:
            port = parts.port or DEFAULT_PORT
        except ValueError as error:
            raise ValueError(f"{uri!r}: bad port ({error})") from None
        return QdrantTarget(uri=uri, collection=name, host=parts.hostname, port=port, https=SERVER_SCHEMES[scheme])
    raise ValueError(f"{uri!r} is not a Qdrant URI (qdrant+edge://, qdrant+local://, qdrant://, qdrant+https://)")


#: Store options a URI's query string may set (``?first_stage=none&prefetch=300``), by type.
URI_OPTIONS: dict[str, type] = {
    "first_stage": str,
    "prefetch": int,
    "muvera_k_sim": int,
    "muvera_dim_proj": int,
    "muvera_r_reps": int,
    "muvera_seed": int,
    "hnsw_ef": int,
    "exact": bool,
}
#: Options only multivector stores take (their first stage).
FIRST_STAGE_OPTIONS = ("first_stage", "prefetch", "muvera_k_sim", "muvera_dim_proj", "muvera_r_reps", "muvera_seed")
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def uri_options(uri: str) -> dict[str, Any]:
    """The store options in ``uri``'s query string, typed; an unknown name or a bad value is a ValueError."""
    options: dict[str, Any] = {}
    for name, value in parse_qsl(urlsplit(uri).query, keep_blank_values=True):
        kind = URI_OPTIONS.get(name)
        if kind is None:
            raise ValueError(f"{uri!r}: unknown option {name!r} (known: {', '.join(URI_OPTIONS)})")
        if kind is int:
            try:
                options[name] = int(value)
            except ValueError:
                raise ValueError(f"{uri!r}: option {name}={value!r} must be an integer") from None
        elif kind is bool:
            if value.lower() not in _TRUE + _FALSE:
                raise ValueError(f"{uri!r}: option {name}={value!r} must be true or false")
            options[name] = value.lower() in _TRUE
        else:
            options[name] = value
    return options

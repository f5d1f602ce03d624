"""Parse ``milvus://`` and ``milvus+lite://`` store URIs into what ``MilvusClient`` needs."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

DEFAULT_PORT = 19530
# Milvus accepts collection names of letters, digits and underscores, not starting with a digit.
_COLLECTION_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,254}")
_QUERY_KEYS = {"db"}


@dataclass(frozen=True)
class MilvusTarget:
    """Where a store lives: the client URI, the collection, and how to name it in messages."""

    client_uri: str
    collection: str
    display_uri: str
    lite: bool = False
    user: str = ""
    password: str = ""
    db_name: str = ""


def _collection(name: str, uri: str) -> str:
    if not _COLLECTION_NAME.fullmatch(name):
        raise ValueError(
            f"store URI {uri!r}: collection name {name!r} must be letters, digits and underscores, "
            "not starting with a digit (at most 255 characters)"
        )
    return name


def parse_uri(uri: str) -> MilvusTarget:
    """``milvus://[user:password@]host[:port]/collection[?db=name]`` (a server) or
    ``milvus+lite://<path to a .db file>/collection`` (Milvus Lite)."""
    parts = urlsplit(uri)
    if parts.scheme == "milvus+lite":
        return _parse_lite(uri)
    if parts.scheme != "milvus":
        raise ValueError(f"not a Milvus store URI: {uri!r} (expected milvus:// or milvus+lite://)")
    if not parts.hostname:
        raise ValueError(f"store URI {uri!r} names no host (e.g. milvus://127.0.0.1:19530/products)")
    name = parts.path.strip("/")
    if not name or "/" in name:
        raise ValueError(f"store URI {uri!r} must name one collection as its path (e.g. milvus://host:19530/products)")
    query = dict(parse_qsl(parts.query))
    unknown = set(query) - _QUERY_KEYS
    if unknown:
        raise ValueError(f"store URI {uri!r}: unknown parameter(s) {sorted(unknown)} (known: {sorted(_QUERY_KEYS)})")
    host = parts.hostname if ":" not in parts.hostname else f"[{parts.hostname}]"
    address = f"{host}:{parts.port or DEFAULT_PORT}"
    shown_query = f"?{parts.query}" if parts.query else ""
    return MilvusTarget(
        client_uri=f"http://{address}",
        collection=_collection(name, uri),
        display_uri=f"milvus://{address}/{name}{shown_query}",  # never the password
        user=unquote(parts.username or ""),
        password=unquote(parts.password or ""),
        db_name=query.get("db", ""),
    )


def _parse_lite(uri: str) -> MilvusTarget:
    rest = uri[len("milvus+lite://") :]
    if "?" in rest or "#" in rest:
        raise ValueError(f"store URI {uri!r}: Milvus Lite URIs take no parameters")
    file_part, _, name = rest.rstrip("/").rpartition("/")
    if not file_part.endswith(".db"):
        raise ValueError(
            f"store URI {uri!r} must be milvus+lite://<path to a .db file>/<collection>, "
            "e.g. milvus+lite://./index/milvus.db/products"
        )
    path = Path(unquote(file_part)).expanduser().resolve()
    return MilvusTarget(
        client_uri=str(path),
        collection=_collection(name, uri),
        display_uri=f"milvus+lite://{path}/{name}",
        lite=True,
    )

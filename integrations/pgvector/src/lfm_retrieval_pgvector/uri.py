"""Parse a ``postgresql://`` store URI into a libpq DSN, a table and a schema."""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import parse_qsl, quote, urlencode, urlsplit, urlunsplit

#: Query parameters that belong to the store, not to libpq; removed before connecting.
STORE_PARAMS = ("table", "schema")
#: PostgreSQL truncates longer identifiers silently (NAMEDATALEN - 1).
MAX_IDENTIFIER_BYTES = 63


@dataclass(frozen=True)
class PgTarget:
    """Where a collection lives: the DSN to connect with, its table and (optional) schema."""

    dsn: str
    table: str
    schema: str | None
    display: str  # the URI as given, password masked: for messages


def mask_uri(uri: str) -> str:
    """``uri`` with any password (in the user info or a ``password=`` parameter) replaced by ``***``."""
    parts = urlsplit(uri)
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        if ":" in userinfo:
            user, _, password = userinfo.partition(":")
            userinfo = f"{user}:***" if password else f"{user}:"
        netloc = f"{userinfo}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(name == "password" for name, _ in pairs):
            masked = [(name, "***" if name == "password" else value) for name, value in pairs]
            query = urlencode(masked, safe="/", quote_via=quote)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _identifier(value: str, what: str, uri: str) -> str:
    if not value or "\x00" in value:
        raise ValueError(f"store URI {mask_uri(uri)!r}: {what} must be a non-empty name")
    if len(value.encode()) > MAX_IDENTIFIER_BYTES:
        raise ValueError(
            f"store URI {mask_uri(uri)!r}: {what} {value!r} is longer than PostgreSQL's "
            f"{MAX_IDENTIFIER_BYTES}-byte identifier limit"
        )
    return value


def parse_uri(uri: str) -> PgTarget:
    """Split ``postgresql://user@host/db?table=products[&schema=s]`` into a :class:`PgTarget`.

    ``table`` is required; ``table`` and ``schema`` are removed from the DSN, every other
    parameter (``host=/socket/dir``, ``sslmode=...``) goes to libpq unchanged.
    """
    parts = urlsplit(uri)
    if parts.scheme not in ("postgresql", "postgres"):
        raise ValueError(f"not a PostgreSQL URI: {mask_uri(uri)!r} (expected postgresql://...)")
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    store = {name: value for name, value in pairs if name in STORE_PARAMS}
    if "table" not in store:
        raise ValueError(
            f"store URI {mask_uri(uri)!r} names no table: add ?table=NAME, e.g. postgresql://user@host/db?table=products"
        )
    table = _identifier(store["table"], "table", uri)
    schema = _identifier(store["schema"], "schema", uri) if "schema" in store else None
    rest = [(name, value) for name, value in pairs if name not in STORE_PARAMS]
    # %20 for spaces, not '+': libpq decodes only %XX escapes (e.g. options=-c%20search_path%3Dx).
    dsn = urlunsplit(parts._replace(query=urlencode(rest, safe="/", quote_via=quote)))
    return PgTarget(dsn=dsn, table=table, schema=schema, display=mask_uri(uri))

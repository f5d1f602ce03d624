"""Table layout, registry table and index DDL of a collection (identifiers via psycopg.sql)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from psycopg import sql

from lfm_retrieval.stores.records import CollectionSpec

#: The registry table, one per schema: the spec each collection was created with.
REGISTRY_TABLE = "lfm_retrieval_collections"

#: distance -> (pgvector operator, ops-class suffix). ``<#>`` is the *negative* inner product.
OPERATORS = {"cosine": "<=>", "dot": "<#>", "euclid": "<->"}
OPS_SUFFIX = {"cosine": "cosine_ops", "dot": "ip_ops", "euclid": "l2_ops"}
#: vector_type -> pgvector column type; the largest dimension HNSW can index for it.
COLUMN_TYPES = {"float32": "vector", "float16": "halfvec"}
HNSW_MAX_DIMENSION = {"float32": 2000, "float16": 4000}


def _derived_name(table: str, suffix: str) -> str:
    """``{table}_{suffix}``, shortened with a hash when it would pass the 63-byte limit."""
    name = f"{table}_{suffix}"
    if len(name.encode()) <= 63:
        return name
    digest = hashlib.sha1(table.encode()).hexdigest()[:10]
    room = 63 - len(f"_{digest}_{suffix}".encode())
    head = table.encode()[:room].decode(errors="ignore")  # never half a character
    return f"{head}_{digest}_{suffix}"


@dataclass(frozen=True)
class Layout:
    """Every name and statement of one collection's table, for one spec."""

    schema: str
    table: str

    # -- identifiers ------------------------------------------------------------------------
    @property
    def qualified(self) -> sql.Composed:
        return sql.Identifier(self.schema, self.table)

    @property
    def registry(self) -> sql.Composed:
        return sql.Identifier(self.schema, REGISTRY_TABLE)

    @property
    def hnsw_index(self) -> str:
        return _derived_name(self.table, "embedding_hnsw")

    @property
    def gin_index(self) -> str:
        return _derived_name(self.table, "metadata_gin")

    @property
    def lock_key(self) -> str:
        """Text hashed into the advisory lock that serialises creating this collection."""
        return f"lfm_retrieval:{self.schema}.{self.table}"

    # -- statements -------------------------------------------------------------------------
    def create_registry(self) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE IF NOT EXISTS {} ("
            "table_name text PRIMARY KEY, dimension integer NOT NULL, distance text NOT NULL, "
            "vector_type text NOT NULL, model text NOT NULL, created_at timestamptz NOT NULL DEFAULT now())"
        ).format(self.registry)

    def create_table(self, spec: CollectionSpec) -> sql.Composed:
        return sql.SQL(
            "CREATE TABLE {} (id uuid PRIMARY KEY, key text NOT NULL, embedding {} NOT NULL, "
            "metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb, fingerprint text NOT NULL DEFAULT '')"
        ).format(self.qualified, column_type(spec))

    def create_hnsw(self, spec: CollectionSpec, *, m: int, ef_construction: int) -> sql.Composed | None:
        """The HNSW index with the ops class of the spec's distance and type (None past HNSW's limit)."""
        if spec.dimension > HNSW_MAX_DIMENSION[spec.vector_type]:
            return None
        statement = "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw (embedding {}) WITH (m = {}, ef_construction = {})"
        return sql.SQL(statement).format(
            sql.Identifier(self.hnsw_index),
            self.qualified,
            sql.SQL(ops_class(spec)),
            sql.Literal(int(m)),
            sql.Literal(int(ef_construction)),
        )

    def create_gin(self) -> sql.Composed:
        """A GIN index serving the ``metadata @> ...`` containment the filters use."""
        return sql.SQL("CREATE INDEX IF NOT EXISTS {} ON {} USING gin (metadata jsonb_path_ops)").format(
            sql.Identifier(self.gin_index), self.qualified
        )

    def drop_indexes(self) -> sql.Composed:
        return sql.SQL("DROP INDEX IF EXISTS {}, {}").format(
            sql.Identifier(self.schema, self.hnsw_index), sql.Identifier(self.schema, self.gin_index)
        )


def column_type(spec: CollectionSpec) -> sql.Composed:
    """``vector(d)`` or ``halfvec(d)``."""
    return sql.SQL("{}({})").format(sql.SQL(COLUMN_TYPES[spec.vector_type]), sql.Literal(int(spec.dimension)))


def ops_class(spec: CollectionSpec) -> str:
    """The HNSW operator class matching the spec, e.g. ``halfvec_cosine_ops``."""
    return f"{COLUMN_TYPES[spec.vector_type]}_{OPS_SUFFIX[spec.distance]}"

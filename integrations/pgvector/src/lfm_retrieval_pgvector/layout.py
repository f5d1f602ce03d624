"""Table layout, registry table and index DDL of a collection (identifiers via psycopg.sql)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from psycopg import sql

from lfm_retrieval.stores.records import AnySpec, CollectionSpec, HybridSpec

#: The registry table, one per schema: the spec each collection was created with.
REGISTRY_TABLE = "lfm_retrieval_collections"

#: distance -> (pgvector operator, ops-class suffix). ``<#>`` is the *negative* inner product.
OPERATORS = {"cosine": "<=>", "dot": "<#>", "euclid": "<->"}
OPS_SUFFIX = {"cosine": "cosine_ops", "dot": "ip_ops", "euclid": "l2_ops"}
#: vector_type -> pgvector column type; the largest dimension HNSW can index for it.
COLUMN_TYPES = {"float32": "vector", "float16": "halfvec"}
HNSW_MAX_DIMENSION = {"float32": 2000, "float16": 4000}
#: The ops class of the MUVERA column: its encodings are compared by inner product.
MUVERA_OPS = "halfvec_ip_ops"


def columns_of(spec: AnySpec) -> tuple[str, ...]:
    """Column order of the table (and of every COPY) for a spec of any kind.

    ``embedding`` is the dense vector, ``tokens`` a record's token vectors as one ``bytea``
    (little-endian rows, float16 or float32 as the spec says), ``muvera`` the MUVERA encoding
    of a multivector record (its first-stage vector)."""
    if isinstance(spec, HybridSpec):
        return ("id", "key", "embedding", "tokens", "metadata", "fingerprint")
    if spec.kind == "multivector":
        return ("id", "key", "muvera", "tokens", "metadata", "fingerprint")
    return ("id", "key", "embedding", "metadata", "fingerprint")


def indexed_column(spec: AnySpec) -> str:
    """The column the HNSW index serves: the dense vector, or a multivector's MUVERA encoding."""
    return "muvera" if spec.kind == "multivector" else "embedding"


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
            "vector_type text NOT NULL, model text NOT NULL, created_at timestamptz NOT NULL DEFAULT now(), spec jsonb)"
        ).format(self.registry)

    def add_registry_spec(self) -> sql.Composed:
        """The ``spec`` column (the whole spec of multivector and hybrid collections) in a registry made before it."""
        return sql.SQL("ALTER TABLE {} ADD COLUMN IF NOT EXISTS spec jsonb").format(self.registry)

    def create_table(self, spec: AnySpec, muvera_dimension: int | None = None) -> sql.Composed:
        """The table of ``spec``'s kind; a multivector table needs the width of its MUVERA encodings."""
        vectors = {
            "embedding": column_type(spec.dense if isinstance(spec, HybridSpec) else spec),
            "muvera": sql.SQL("halfvec({})").format(sql.Literal(int(muvera_dimension or 0))),
            "tokens": sql.SQL("bytea"),
        }
        columns = [
            sql.SQL("{} {} NOT NULL").format(sql.Identifier(name), vectors[name])
            for name in columns_of(spec)
            if name in vectors
        ]
        return sql.SQL(
            "CREATE TABLE {} (id uuid PRIMARY KEY, key text NOT NULL, {}, "
            "metadata jsonb NOT NULL DEFAULT '{{}}'::jsonb, fingerprint text NOT NULL DEFAULT '')"
        ).format(self.qualified, sql.SQL(", ").join(columns))

    def store_tokens_uncompressed(self) -> sql.Composed:
        """Token vectors do not compress: keep them out of line without pglz (no CPU spent on either side)."""
        return sql.SQL("ALTER TABLE {} ALTER COLUMN tokens SET STORAGE EXTERNAL").format(self.qualified)

    def create_hnsw(
        self, spec: AnySpec, *, m: int, ef_construction: int, muvera_dimension: int | None = None
    ) -> sql.Composed | None:
        """The HNSW index of the spec's first-stage column (None past HNSW's dimension limit)."""
        if spec.kind == "multivector":
            if not muvera_dimension or muvera_dimension > HNSW_MAX_DIMENSION["float16"]:
                return None
            ops = MUVERA_OPS
        else:
            dense = spec.dense if isinstance(spec, HybridSpec) else spec
            if dense.dimension > HNSW_MAX_DIMENSION[dense.vector_type]:
                return None
            ops = ops_class(dense)
        statement = "CREATE INDEX IF NOT EXISTS {} ON {} USING hnsw ({} {}) WITH (m = {}, ef_construction = {})"
        return sql.SQL(statement).format(
            sql.Identifier(self.hnsw_index),
            self.qualified,
            sql.Identifier(indexed_column(spec)),
            sql.SQL(ops),
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

"""The collection layout: fields, index, and the spec recorded in the collection's properties."""

from __future__ import annotations

import json
from typing import Any

from pymilvus import DataType, MilvusClient
from pymilvus.milvus_client.index import IndexParams
from pymilvus.orm.schema import CollectionSchema

from lfm_retrieval.errors import CollectionMismatchError
from lfm_retrieval.stores.records import AnySpec, HybridSpec, spec_from_metadata
from lfm_retrieval_milvus.tokens import MAX_PAGES, PAGE_CHARS

ID, KEY, FINGERPRINT, VECTOR, TOKENS, METADATA = "id", "key", "fingerprint", "vector", "tokens", "metadata"
OUTPUT_FIELDS = [KEY, METADATA]
# The spec lives in the collection's properties: the server and Lite both keep them
# (Lite drops the description), and they are written in the same call as the collection.
SPEC_PROPERTY = "lfm_retrieval.spec"
FIRST_STAGE_PROPERTY = "lfm_retrieval.first_stage"
METRICS = {"cosine": "COSINE", "dot": "IP", "euclid": "L2"}
VECTOR_TYPES = {"float32": DataType.FLOAT_VECTOR, "float16": DataType.FLOAT16_VECTOR}
MAX_VARCHAR_BYTES = 65535  # Milvus' limit for a VARCHAR value
MAX_JSON_BYTES = 65536  # Milvus' default limit for a JSON value
MAX_DIMENSION = 32768
MAX_TOP_K = 16384  # Milvus returns at most this many hits per search


def vector_field(spec: AnySpec, first_stage_dimension: int | None = None) -> tuple[DataType, int, str]:
    """(type, dimension, metric) of the indexed ``vector`` field: the dense vector of a dense or
    hybrid collection, the first-stage (MUVERA, inner product) encoding of a multivector one."""
    if isinstance(spec, HybridSpec):
        spec = spec.dense
    elif spec.kind == "multivector":
        if first_stage_dimension is None:
            raise ValueError("a multivector collection needs its first stage's dimension")
        return DataType.FLOAT_VECTOR, first_stage_dimension, "IP"
    return VECTOR_TYPES[spec.vector_type], spec.dimension, METRICS[spec.distance]


def build_schema(spec: AnySpec, first_stage_dimension: int | None = None) -> CollectionSchema:
    """id (the stable uuid) | key | fingerprint | vector(d) | [tokens (pages)] | metadata (JSON)."""
    schema = MilvusClient.create_schema(auto_id=False, enable_dynamic_field=False, description=_description(spec))
    schema.add_field(ID, DataType.VARCHAR, max_length=36, is_primary=True, description="uuid5 of the key")
    schema.add_field(KEY, DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES, description="the caller's key")
    schema.add_field(FINGERPRINT, DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES, description="content fingerprint")
    vector_type, dimension, _ = vector_field(spec, first_stage_dimension)
    schema.add_field(VECTOR, vector_type, dim=dimension)
    if spec.kind != "dense":
        schema.add_field(
            TOKENS,
            DataType.ARRAY,
            element_type=DataType.VARCHAR,
            max_capacity=MAX_PAGES,
            max_length=PAGE_CHARS,
            description="token vectors: base64 pages of their bytes",
        )
    schema.add_field(METADATA, DataType.JSON, description="payload")
    return schema


def _description(spec: AnySpec) -> str:
    if isinstance(spec, HybridSpec):
        return f"lfm-retrieval hybrid store: {spec.dense.model or 'dense'} + {spec.multivector.model or 'tokens'}"
    return f"lfm-retrieval {spec.kind} store: {spec.model or 'vectors'} ({spec.dimension}-d, {spec.distance})"


def build_index_params(
    spec: AnySpec, *, m: int, ef_construction: int, first_stage_dimension: int | None = None
) -> IndexParams:
    """HNSW over the indexed vector with its metric."""
    params = MilvusClient.prepare_index_params()
    params.add_index(
        VECTOR,
        index_type="HNSW",
        metric_type=vector_field(spec, first_stage_dimension)[2],
        params={"M": m, "efConstruction": ef_construction},
    )
    return params


def spec_properties(spec: AnySpec, first_stage: dict[str, Any] | None = None) -> dict[str, str]:
    """The collection properties that record ``spec`` (and a multivector collection's first stage)."""
    properties = {SPEC_PROPERTY: json.dumps(spec.as_metadata(), sort_keys=True)}
    if first_stage is not None:
        properties[FIRST_STAGE_PROPERTY] = json.dumps(first_stage, sort_keys=True)
    return properties


def read_first_stage(description: dict[str, Any], where: str) -> dict[str, Any]:
    """The first-stage settings recorded with a multivector collection."""
    raw = (description.get("properties") or {}).get(FIRST_STAGE_PROPERTY)
    try:
        return json.loads(raw)
    except (TypeError, ValueError) as error:
        raise CollectionMismatchError(f"{where} has no readable {FIRST_STAGE_PROPERTY!r} property: {error}") from error


def read_spec(description: dict[str, Any], where: str) -> dict[str, Any]:
    """The spec recorded with a collection, checked against its actual fields.

    Raises CollectionMismatchError for a collection this package did not create.
    """
    raw = (description.get("properties") or {}).get(SPEC_PROPERTY)
    if raw is None:
        raise CollectionMismatchError(
            f"{where} exists but was not created by lfm-retrieval (no {SPEC_PROPERTY!r} property); nothing was written"
        )
    try:
        stored = spec_from_metadata(json.loads(raw))
    except (ValueError, TypeError, KeyError) as error:
        raise CollectionMismatchError(f"{where} has an unreadable {SPEC_PROPERTY!r} property: {error}") from error
    fields = {field["name"]: field for field in description.get("fields", [])}
    wanted = {ID, KEY, FINGERPRINT, VECTOR, METADATA} | ({TOKENS} if stored.kind != "dense" else set())
    vector = fields.get(VECTOR, {})
    dense = stored.dense if isinstance(stored, HybridSpec) else stored
    expected_type = DataType.FLOAT_VECTOR if stored.kind == "multivector" else VECTOR_TYPES[dense.vector_type]
    if wanted - set(fields) or set(fields) - wanted or vector.get("type") != expected_type:
        raise CollectionMismatchError(
            f"{where} does not have the fields of an lfm-retrieval {stored.kind} store; nothing was written"
        )
    if stored.kind != "multivector" and int(vector.get("params", {}).get("dim", -1)) != dense.dimension:
        raise CollectionMismatchError(f"{where}: its vector field does not match its recorded spec {stored}")
    return stored.as_metadata()

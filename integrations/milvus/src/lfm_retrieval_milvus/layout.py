"""The collection layout: fields, index, and the spec recorded in the collection's properties."""

from __future__ import annotations

import json
from typing import Any

from pymilvus import DataType, MilvusClient
from pymilvus.milvus_client.index import IndexParams
from pymilvus.orm.schema import CollectionSchema

from lfm_retrieval.errors import CollectionMismatchError
from lfm_retrieval.stores.records import CollectionSpec

ID, KEY, FINGERPRINT, VECTOR, METADATA = "id", "key", "fingerprint", "vector", "metadata"
OUTPUT_FIELDS = [KEY, METADATA]
# The spec lives in the collection's properties: the server and Lite both keep them
# (Lite drops the description), and they are written in the same call as the collection.
SPEC_PROPERTY = "lfm_retrieval.spec"
METRICS = {"cosine": "COSINE", "dot": "IP", "euclid": "L2"}
VECTOR_TYPES = {"float32": DataType.FLOAT_VECTOR, "float16": DataType.FLOAT16_VECTOR}
MAX_VARCHAR_BYTES = 65535  # Milvus' limit for a VARCHAR value
MAX_JSON_BYTES = 65536  # Milvus' default limit for a JSON value
MAX_DIMENSION = 32768
MAX_TOP_K = 16384  # Milvus returns at most this many hits per search


def build_schema(spec: CollectionSpec) -> CollectionSchema:
    """id (the stable uuid) | key | fingerprint | vector(d) | metadata (JSON)."""
    schema = MilvusClient.create_schema(
        auto_id=False,
        enable_dynamic_field=False,
        description=f"lfm-retrieval dense store: {spec.model or 'vectors'} ({spec.dimension}-d, {spec.distance})",
    )
    schema.add_field(ID, DataType.VARCHAR, max_length=36, is_primary=True, description="uuid5 of the key")
    schema.add_field(KEY, DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES, description="the caller's key")
    schema.add_field(FINGERPRINT, DataType.VARCHAR, max_length=MAX_VARCHAR_BYTES, description="content fingerprint")
    schema.add_field(VECTOR, VECTOR_TYPES[spec.vector_type], dim=spec.dimension)
    schema.add_field(METADATA, DataType.JSON, description="payload")
    return schema


def build_index_params(spec: CollectionSpec, *, m: int, ef_construction: int) -> IndexParams:
    """HNSW over the vector with the spec's metric."""
    params = MilvusClient.prepare_index_params()
    params.add_index(
        VECTOR,
        index_type="HNSW",
        metric_type=METRICS[spec.distance],
        params={"M": m, "efConstruction": ef_construction},
    )
    return params


def spec_properties(spec: CollectionSpec) -> dict[str, str]:
    """The collection properties that record ``spec``."""
    return {SPEC_PROPERTY: json.dumps(spec.as_metadata(), sort_keys=True)}


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
        spec = CollectionSpec(**json.loads(raw)).as_metadata()
    except (ValueError, TypeError) as error:
        raise CollectionMismatchError(f"{where} has an unreadable {SPEC_PROPERTY!r} property: {error}") from error
    fields = {field["name"]: field for field in description.get("fields", [])}
    vector = fields.get(VECTOR, {})
    missing = {ID, KEY, FINGERPRINT, VECTOR, METADATA} - set(fields)
    if missing or vector.get("type") != VECTOR_TYPES[spec["vector_type"]]:
        raise CollectionMismatchError(
            f"{where} does not have the fields of an lfm-retrieval store; nothing was written"
        )
    if int(vector.get("params", {}).get("dim", -1)) != spec["dimension"]:
        raise CollectionMismatchError(f"{where}: its vector field does not match its recorded spec {spec}")
    return spec

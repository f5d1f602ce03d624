"""EncoderSpec: one serialisable description that every entry point builds encoders from."""

from __future__ import annotations

import json

import numpy as np
import pytest

from lfm_retrieval import ColBERTEncoder, DenseEncoder
from lfm_retrieval.encoders import EncoderSpec, build_encoder

TEXTS = ["waterproof trail shoes", "Kopfhörer mit Geräuschunterdrückung"]


def test_every_encoder_carries_a_spec_that_rebuilds_it_through_json(dense_path, colbert_path) -> None:
    dense = DenseEncoder(str(dense_path), device="cpu", dtype="bfloat16", batch_size=4)
    assert dense.spec == EncoderSpec("dense", str(dense_path), device="cpu", dtype="bfloat16", batch_size=4)
    again = build_encoder(EncoderSpec.from_dict(json.loads(json.dumps(dense.spec.to_dict()))))
    assert isinstance(again, DenseEncoder) and again.query_precision == "bfloat16" and again.batch_size == 4
    np.testing.assert_array_equal(again.encode_queries(TEXTS), dense.encode_queries(TEXTS))
    colbert = ColBERTEncoder(str(colbert_path), device="cpu", quantize=None)
    rebuilt = build_encoder(EncoderSpec.from_dict(json.loads(json.dumps(colbert.spec.to_dict()))))
    assert isinstance(rebuilt, ColBERTEncoder) and rebuilt.spec == colbert.spec
    for got, expected in zip(rebuilt.encode_documents(TEXTS), colbert.encode_documents(TEXTS), strict=True):
        np.testing.assert_array_equal(got, expected)


def test_a_torch_dtype_is_kept_by_name_and_secrets_stay_out_of_json() -> None:
    torch = pytest.importorskip("torch")
    assert EncoderSpec(dtype=torch.float16).dtype == "float16"
    spec = EncoderSpec(base_url="http://127.0.0.1:1", api_key="secret", headers={"X-Key": "secret"})
    assert "secret" not in json.dumps(spec.to_dict()) and "secret" not in repr(spec)
    assert spec.to_dict(secrets=True)["api_key"] == "secret"


def test_bad_specs_are_refused_naming_the_field() -> None:
    with pytest.raises(ValueError, match="kind must be 'dense' or 'colbert'"):
        EncoderSpec("sparse")
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, float16, not 'float64'"):
        EncoderSpec(dtype="float64")
    with pytest.raises(ValueError, match="quantize must be"):
        EncoderSpec(quantize="int4")
    with pytest.raises(ValueError, match="prompts= is for dense models"):
        EncoderSpec("colbert", prompts={"query": "q: ", "document": "d: "})
    with pytest.raises(ValueError, match="unknown encoder spec field"):
        EncoderSpec.from_dict({"kind": "dense", "modle": "x"})


def test_a_class_of_the_other_kind_is_refused_before_anything_loads() -> None:
    with pytest.raises(TypeError, match="cls=ColBERTEncoder is not a DenseEncoder, the encoder of a 'dense' spec"):
        build_encoder(EncoderSpec("dense", "no/such/model"), ColBERTEncoder)


def test_the_ray_engine_builds_its_actors_from_the_spec_not_from_the_loaded_model(dense_path) -> None:
    pytest.importorskip("ray")
    from lfm_retrieval.catalog.engines.ray import RayEngine

    class Subclass(DenseEncoder):
        pass

    half = Subclass(str(dense_path), device="cpu", dtype="bfloat16", batch_size=4)
    recipe = RayEngine()._recipe(half)
    assert recipe.cls is Subclass
    assert (recipe.spec.dtype, recipe.spec.quantize, recipe.spec.device, recipe.spec.batch_size) == (
        "bfloat16",
        None,
        "cpu",
        4,
    ), "the driver's document precision, no query copy in actors"
    int8 = DenseEncoder(str(dense_path), quantize="int8")
    assert RayEngine()._recipe(int8).spec.quantize == "int8"
    assert RayEngine(gpus_per_worker=1)._recipe(int8).spec.quantize is None, "int8 runs on CPUs only"
    assert RayEngine(encoder_options={"quantize": "int8"})._recipe(half).spec.quantize == "int8"
    built = recipe.build()
    assert type(built) is Subclass and built.query_precision == "bfloat16"

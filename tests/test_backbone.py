"""The bidirectional LFM2 backbone: loaded without remote code, bidirectional, and harmless to causal LFM2."""

from __future__ import annotations

import json

import pytest
import torch
from sentence_transformers import SentenceTransformer
from transformers import AutoModel, AutoModelForCausalLM
from transformers.models.lfm2.modeling_lfm2 import Lfm2ForCausalLM, Lfm2Model

from lfm_retrieval import DenseEncoder, ModelLoadError
from lfm_retrieval.models import Lfm2BidirectionalModel
from lfm_retrieval.testing import build_causal_lfm2


def _first_position(model: torch.nn.Module, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(input_ids=torch.tensor([ids])).last_hidden_state[0, 0]


def test_checkpoint_announces_remote_code_that_is_never_needed(dense_path):
    config = json.loads((dense_path / "config.json").read_text())
    assert config["architectures"] == ["Lfm2BidirectionalModel"]
    assert "auto_map" in config
    assert not list(dense_path.glob("*.py")), "the fixture ships no remote code"
    model = SentenceTransformer(str(dense_path), device="cpu", trust_remote_code=False)
    assert type(model[0].auto_model) is Lfm2BidirectionalModel


def test_changing_only_the_last_token_moves_the_cls_vector(dense_path):
    ids, changed = [1, 40, 41, 42, 43, 44], [1, 40, 41, 42, 43, 99]
    bidirectional = AutoModel.from_pretrained(dense_path)
    assert type(bidirectional) is Lfm2BidirectionalModel
    delta = (_first_position(bidirectional, ids) - _first_position(bidirectional, changed)).abs().max()
    assert delta > 1e-3

    causal = Lfm2Model.from_pretrained(dense_path)  # same weights, native causal class
    delta = (_first_position(causal, ids) - _first_position(causal, changed)).abs().max()
    assert delta == 0


def test_causal_lfm2_models_keep_their_native_classes(tmp_path):
    path = build_causal_lfm2(tmp_path / "causal")
    assert type(AutoModelForCausalLM.from_pretrained(path)) is Lfm2ForCausalLM
    trunk = AutoModel.from_pretrained(path)
    assert type(trunk) is Lfm2Model
    ids = [1, 40, 41, 42, 43, 44]
    assert torch.equal(_first_position(trunk, ids), _first_position(trunk, [*ids[:-1], 99]))


def test_attention_modules_are_not_causal(dense_path):
    model = AutoModel.from_pretrained(dense_path)
    attention = [layer.self_attn for layer in model.layers if layer.is_attention_layer]
    assert attention and all(module.is_causal is False for module in attention)


def test_weights_load_under_the_native_state_dict_keys(dense_path):
    model = AutoModel.from_pretrained(dense_path)
    assert set(model.state_dict()) == set(Lfm2Model(model.config).state_dict())


def test_an_lfm25_checkpoint_built_as_the_causal_model_is_refused(dense_path, monkeypatch):
    # Simulate a process where the bidirectional class is not registered.
    from transformers.models.lfm2.configuration_lfm2 import Lfm2Config

    extra = dict(AutoModel._model_mapping._extra_content)
    extra.pop(Lfm2Config, None)
    monkeypatch.setattr(AutoModel._model_mapping, "_extra_content", extra)
    with pytest.raises(ModelLoadError, match="causal"):
        DenseEncoder(str(dense_path), device="cpu")


def test_padding_leaks_into_real_tokens(dense_path):
    """Why the backbone zeroes pads when the encoders pad: without it (the default, as
    trained) a padded text's vector differs from the text alone.

    The centred convolution reads one position to the right, so the last real token sees
    the pad token (the conv stream is not zeroed at pads, as in training), and attention
    carries that into the CLS vector.
    """
    model = AutoModel.from_pretrained(dense_path)
    ids = [1, 40, 41, 42, 43]
    padded = torch.tensor([[*ids, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 0, 0]])
    with torch.no_grad():
        alone = model(input_ids=torch.tensor([ids])).last_hidden_state[0, 0]
        in_batch = model(input_ids=padded, attention_mask=mask).last_hidden_state[0, 0]
    assert (alone - in_batch).abs().max() > 1e-4


def test_inference_forward_equals_the_autograd_forward_bit_for_bit(dense_path):
    # Without autograd the MLP runs its activation and gate in place; with it, transformers' own module.
    model = AutoModel.from_pretrained(dense_path)
    ids = torch.tensor([[1, 40, 41, 42, 43, 44], [1, 45, 46, 47, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    with torch.inference_mode():
        fast = model(input_ids=ids, attention_mask=mask).last_hidden_state
    trained = model(input_ids=ids, attention_mask=mask).last_hidden_state
    assert torch.equal(fast, trained.detach())
    trained.sum().backward()  # the autograd path keeps working (no in-place op on saved tensors)
    assert model.layers[0].feed_forward.w1.weight.grad is not None

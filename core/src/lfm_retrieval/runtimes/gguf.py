"""The llama.cpp runtime: a GGUF file in this process through llama-cpp-python (``lfm-retrieval[gguf]``).

A GGUF carries the weights, the vocabulary and the pooling, not the sentence-transformers / PyLate
settings: the prompts, prefixes, query length and skiplist are given here, defaulting to LFM2.5's
(``query: ``/``document: ``; ``[Q] ``/``[D] ``, 32 query tokens, punctuation skiplist). Each is applied
once, by this runtime, to raw texts.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from lfm_retrieval.runtimes.base import Side
from lfm_retrieval.runtimes.colbert_rules import SKIPLIST_WORDS, ColBERTRules
from lfm_retrieval.runtimes.gguf_model import DEFAULT_BATCH_TOKENS, GGUFModel, token_id, token_ids_of, tokenize
from lfm_retrieval.vectors import unit_rows

LFM25_PROMPTS = {"query": "query: ", "document": "document: "}
# general.file_type of a GGUF (llama.cpp's llama_ftype) -> the precision it reports
FILE_TYPES = {0: "f32", 1: "f16", 2: "q4_0", 7: "q8_0", 15: "q4_k_m", 17: "q5_k_m", 18: "q6_k", 32: "bf16"}


class GGUFRuntime:
    """What both GGUF runtimes share: the model and the encoder's batch settings."""

    uses_model_thread = True  # one thread runs all model work; a llama.cpp context is not thread-safe
    batch_size = 32
    max_padding = 1.0  # llama.cpp runs each text at its own length: a batch holds no padding

    def __init__(self, path: str | Path, *, pooled: bool, n_threads: int | None, batch_tokens: int) -> None:
        self.model_name = str(path)
        self.model = GGUFModel(path, pooled=pooled, n_threads=n_threads, batch_tokens=batch_tokens)
        self.max_batch_tokens = batch_tokens
        self.dimension = self.model.dimension
        file_type = int(self.model.llm.metadata.get("general.file_type", -1))
        self.precision = FILE_TYPES.get(file_type, f"gguf type {file_type}")

    def _tokens(self, texts: Sequence[str]) -> list[list[int]]:
        return [tokenize(self.model.llm, text) for text in texts]


class GGUFDenseRuntime(GGUFRuntime):
    """A dense GGUF (LFM2.5-Embedding): the file's pooling (CLS), the side's prompt prepended to each text."""

    def __init__(
        self,
        path: str | Path,
        *,
        prompts: dict[str, str] | None = None,
        n_threads: int | None = None,
        max_length: int = 512,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ) -> None:
        prompts = dict(LFM25_PROMPTS if prompts is None else prompts)
        unknown = set(prompts) - {side.value for side in Side}
        if unknown:
            raise ValueError(f"prompts has keys {sorted(unknown)}; only 'query' and 'document' are sides")
        if not 0 < max_length <= batch_tokens:
            raise ValueError(f"max_length must be 1 to batch_tokens ({batch_tokens}), not {max_length}")
        super().__init__(path, pooled=True, n_threads=n_threads, batch_tokens=batch_tokens)
        self.prompts = {side: prompts.get(side.value, "") for side in Side}
        self.max_length = max_length

    def token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        full = [len(ids) for ids in self._tokens([self.prompts[side] + text for text in texts])]
        return [min(n, self.max_length) for n in full], sum(n > self.max_length for n in full)

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        ids = [row[: self.max_length] for row in self._tokens([self.prompts[side] + text for text in texts])]
        return list(unit_rows(np.stack(self.model.run(ids))))


class GGUFColBERTRuntime(GGUFRuntime):
    """A ColBERT GGUF (LFM2.5-ColBERT, its projection in the file): per-token vectors with PyLate's rules
    (:class:`~lfm_retrieval.runtimes.colbert_rules.ColBERTRules`); queries expanded with the file's EOS.

    Unlike PyLate, llama.cpp cannot hide the query-expansion tokens from attention (it has no per-token
    key mask inside one sequence): every query token attends to them, as with PyLate's
    ``attend_to_expansion_tokens=True``. Documents are exact."""

    def __init__(
        self,
        path: str | Path,
        *,
        query_prefix: str = "[Q] ",
        document_prefix: str = "[D] ",
        query_length: int = 32,
        document_length: int = 512,
        skiplist_words: Sequence[str] = SKIPLIST_WORDS,
        do_query_expansion: bool = True,
        n_threads: int | None = None,
        batch_tokens: int = DEFAULT_BATCH_TOKENS,
    ) -> None:
        if not 1 < query_length <= document_length <= batch_tokens:
            raise ValueError(
                f"need 1 < query_length ({query_length}) <= document_length ({document_length}) "
                f"<= batch_tokens ({batch_tokens})"
            )
        super().__init__(path, pooled=False, n_threads=n_threads, batch_tokens=batch_tokens)
        import llama_cpp

        llm = self.model.llm
        self.rules = ColBERTRules(
            query_prefix_id=token_id(llm, query_prefix) if query_prefix else None,
            document_prefix_id=token_id(llm, document_prefix) if document_prefix else None,
            expansion_id=llama_cpp.llama_vocab_eos(llama_cpp.llama_model_get_vocab(llm.model)),
            skiplist_ids=token_ids_of(llm, skiplist_words),
            query_length=query_length,
            document_length=document_length,
            do_query_expansion=do_query_expansion,
        )
        self.query_prefix, self.document_prefix = query_prefix, document_prefix
        self.query_length, self.document_length = query_length, document_length
        self.max_length = document_length

    def token_lengths(self, texts: list[str], side: Side) -> tuple[list[int], int]:
        ids = self._tokens(texts)
        limit = self.rules.limit(side)
        return [len(self.rules.model_ids(row, side)) for row in ids], sum(len(row) > limit for row in ids)

    def encode_batch(self, texts: list[str], side: Side) -> list[np.ndarray]:
        ids = [self.rules.model_ids(row, side) for row in self._tokens(texts)]
        outputs = self.model.run(ids)
        return [unit_rows(out[self.rules.kept_rows(row, side)]) for row, out in zip(ids, outputs, strict=True)]

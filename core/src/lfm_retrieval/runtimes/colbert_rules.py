"""PyLate's ColBERT token rules, for runtimes that tokenise themselves (llama.cpp, servers).

As ``pylate.models.ColBERT.tokenize`` / ``encode`` do: a text is tokenised (BOS first) and cut to the
side's length minus one, the side's prefix token goes in right after BOS; a query is padded with the
expansion token (the tokenizer's mask token, else its EOS) up to ``query_length`` and every one of its
rows is kept; a document keeps the rows whose token is not in the skiplist (punctuation by default).
"""

from __future__ import annotations

import string
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lfm_retrieval.runtimes.base import Side

SKIPLIST_WORDS = tuple(string.punctuation)  # PyLate's default skiplist


@dataclass(frozen=True)
class ColBERTRules:
    """The token ids of one ColBERT model's rules, and how they apply to a text's token ids."""

    query_prefix_id: int | None  # None: no prefix token (an empty prefix)
    document_prefix_id: int | None
    expansion_id: int  # what queries are padded with
    skiplist_ids: frozenset[int]
    query_length: int = 32
    document_length: int = 512
    do_query_expansion: bool = True

    def limit(self, side: Side) -> int:
        """How many of a text's own tokens (BOS included) the side keeps."""
        length = self.query_length if side is Side.QUERY else self.document_length
        return length - (self.prefix_id(side) is not None)

    def prefix_id(self, side: Side) -> int | None:
        return self.query_prefix_id if side is Side.QUERY else self.document_prefix_id

    def model_ids(self, ids: Sequence[int], side: Side) -> list[int]:
        """What the model runs on for a text tokenised as ``ids`` (BOS first)."""
        ids = list(ids[: self.limit(side)])
        if side is Side.QUERY and self.do_query_expansion:
            ids += [self.expansion_id] * (self.limit(side) - len(ids))
        prefix = self.prefix_id(side)
        return ids if prefix is None else [*ids[:1], prefix, *ids[1:]]

    def kept_rows(self, model_ids: Sequence[int], side: Side) -> np.ndarray:
        """Which of the model's output rows are the text's vectors: all of a query's, a document's
        except skiplist tokens."""
        if side is Side.QUERY:
            return np.ones(len(model_ids), dtype=bool)
        return np.fromiter((token not in self.skiplist_ids for token in model_ids), dtype=bool, count=len(model_ids))

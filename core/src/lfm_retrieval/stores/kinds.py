"""The three store kinds in one place: their store class, the encoders a query needs, how it is searched.

Users name a kind by its string (``"dense"``, ``"multivector"``, ``"hybrid"``); :meth:`StoreKind.of`
turns such a string (or a store) into the member that every caller dispatches on.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import Enum
from typing import Any, Literal

import numpy as np

from lfm_retrieval.stores.base import DenseStore, FilterSpec, HybridStore, MultiVectorStore, Store, TokenVectors
from lfm_retrieval.stores.records import AnySpec, CollectionSpec, Hit, HybridSpec

#: The names of the query encoders a kind may need.
EncoderName = Literal["dense", "colbert"]


@dataclass(frozen=True)
class EncodedQuery:
    """One query encoded on the query side: the dense vector, the ColBERT token vectors, or both."""

    vector: np.ndarray | None = None
    tokens: TokenVectors | None = None


class StoreKind(str, Enum):
    """A collection kind; equal to its string, so ``StoreKind.DENSE == "dense"``."""

    DENSE = "dense"
    MULTIVECTOR = "multivector"
    HYBRID = "hybrid"

    def __str__(self) -> str:  # the plain name in messages, on every Python (no enum.StrEnum before 3.11)
        return self.value

    def __format__(self, spec: str) -> str:
        return self.value.__format__(spec)

    @classmethod
    def of(cls, value: str | Store) -> StoreKind:
        """The kind a string names or a store serves; ValueError naming the kinds otherwise."""
        name = value.kind if isinstance(value, Store) else value
        try:
            return cls(name)
        except ValueError:
            raise ValueError(f"kind must be one of {', '.join(KINDS)}, not {name!r}") from None

    @property
    def store_class(self) -> type[Store]:
        """The store protocol class of this kind."""
        return {"dense": DenseStore, "multivector": MultiVectorStore, "hybrid": HybridStore}[self.value]

    @property
    def encoders(self) -> tuple[EncoderName, ...]:
        """The query encoders a search of this kind needs, in the order :meth:`spec_parts` pairs them."""
        return _ENCODERS[self.value]

    def spec_parts(self, spec: AnySpec) -> list[tuple[CollectionSpec, EncoderName]]:
        """Each part of a collection's spec with the encoder whose model wrote it."""
        parts = (spec.dense, spec.multivector) if isinstance(spec, HybridSpec) else (spec,)
        return list(zip(parts, self.encoders, strict=True))

    def search(self, store: Store, query: EncodedQuery, k: int, filter: FilterSpec, prefetch: int) -> list[Hit]:
        """``store.search`` with the parts of ``query`` this kind uses (``prefetch``: hybrid only)."""
        args, options = self._arguments(store, query, k, filter, prefetch)
        searched: Any = store  # each kind's store class has its own search signature
        return searched.search(*args, **options)

    async def asearch(self, store: Store, query: EncodedQuery, k: int, filter: FilterSpec, prefetch: int) -> list[Hit]:
        """Async :meth:`search` (the store's ``asearch``)."""
        args, options = self._arguments(store, query, k, filter, prefetch)
        return await store.asearch(*args, **options)

    def _arguments(
        self, store: Store, query: EncodedQuery, k: int, filter: FilterSpec, prefetch: int
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        if not isinstance(store, self.store_class):
            raise TypeError(f"{store.uri!r} is a {type(store).__name__}, not a {self.value} store")
        if self is StoreKind.HYBRID:
            return (query.vector, query.tokens, k, filter), {"prefetch": prefetch}
        return (query.tokens if self is StoreKind.MULTIVECTOR else query.vector, k, filter), {}


_ENCODERS: dict[str, tuple[EncoderName, ...]] = {
    "dense": ("dense",),
    "multivector": ("colbert",),
    "hybrid": ("dense", "colbert"),
}
#: The kinds' names, as users pass them.
KINDS: tuple[str, ...] = tuple(kind.value for kind in StoreKind)

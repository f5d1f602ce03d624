"""Search a store with text: the one place a query is encoded for a store's kind.

The CLI and the LangChain / LlamaIndex retrievers all call :func:`search_text` (or
:func:`asearch_text`); they keep only their own framework glue.
"""

from __future__ import annotations

import asyncio
from typing import Any

from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder
from lfm_retrieval.encoders.microbatch import aencode_query
from lfm_retrieval.errors import CollectionMismatchError, check_query
from lfm_retrieval.stores import FilterSpec, Hit, Store
from lfm_retrieval.stores.kinds import EncodedQuery, StoreKind


def check_encoders(store: Store, dense: DenseEncoder | None, colbert: ColBERTEncoder | None) -> None:
    """ValueError naming what is missing when ``store``'s kind needs an encoder that was not given."""
    given = {"dense": dense, "colbert": colbert}
    missing = [f"a {name} encoder" for name in StoreKind.of(store).encoders if given[name] is None]
    if missing:
        raise ValueError(f"a {store.kind} store ({store.uri!r}) needs {' and '.join(missing)} to encode the query")


def check_models(store: Store, dense: DenseEncoder | None, colbert: ColBERTEncoder | None) -> None:
    """CollectionMismatchError unless the collection's recorded models are the query encoders'.

    Reads the collection's spec (once per store object): LookupError if it does not exist."""
    check_encoders(store, dense, colbert)
    given = {"dense": dense, "colbert": colbert}
    for part, name in StoreKind.of(store).spec_parts(store.collection_spec()):
        encoder = given[name]
        if part.model and encoder is not None and encoder.model_id != part.model:
            raise CollectionMismatchError(
                f"collection {store.uri!r} holds vectors of {part.model!r}, not of {encoder.model_id!r} "
                "(the query encoder); nothing was searched"
            )


def _used(store: Store, dense: DenseEncoder | None, colbert: ColBERTEncoder | None) -> tuple[Any, Any]:
    """The encoders ``store``'s kind uses (an encoder it does not use encodes nothing)."""
    needs = StoreKind.of(store).encoders
    return (dense if "dense" in needs else None), (colbert if "colbert" in needs else None)


def _encode(text: str, dense: DenseEncoder | None, colbert: ColBERTEncoder | None) -> EncodedQuery:
    vector = dense.encode_queries([text])[0] if dense is not None else None
    tokens = colbert.encode_queries([text])[0] if colbert is not None else None
    return EncodedQuery(vector, tokens)


def search_text(
    store: Store,
    text: str,
    *,
    dense: DenseEncoder | None = None,
    colbert: ColBERTEncoder | None = None,
    k: int = 10,
    filter: FilterSpec = None,
    prefetch: int = 100,
) -> list[Hit]:
    """The ``k`` best hits of ``store`` for the query ``text``, encoded on the query side.

    A dense store needs ``dense``, a multivector store ``colbert``, a hybrid store both
    (``prefetch`` dense candidates reordered by MaxSim). The collection's recorded models
    are checked against the encoders before anything is searched. A blank or non-string
    ``text`` raises InvalidTextError.
    """
    check_query(text)
    check_models(store, dense, colbert)
    return StoreKind.of(store).search(store, _encode(text, *_used(store, dense, colbert)), k, filter, prefetch)


async def asearch_text(
    store: Store,
    text: str,
    *,
    dense: DenseEncoder | None = None,
    colbert: ColBERTEncoder | None = None,
    k: int = 10,
    filter: FilterSpec = None,
    prefetch: int = 100,
) -> list[Hit]:
    """Async :func:`search_text`: the model check in a worker thread, the query encoded through
    the encoders' micro-batchers (concurrent queries share model calls, no thread per call),
    then the store's ``asearch``."""
    check_query(text)
    await asyncio.to_thread(check_models, store, dense, colbert)
    query = EncodedQuery(*await aencode_query(text, *_used(store, dense, colbert)))
    return await StoreKind.of(store).asearch(store, query, k, filter, prefetch)


def hit_text(hit: Hit, text_field: str, where: str) -> str:
    """The text a framework shows for a hit: its payload's ``text_field``.

    KeyError naming the fields the payload has when it lacks ``text_field`` (a wrong
    ``text_field`` must not turn into silently empty documents)."""
    if text_field not in hit.payload:
        raise KeyError(
            f"record {hit.key!r} in {where!r} has no {text_field!r} field in its payload "
            f"(it has {sorted(hit.payload)}); set text_field= to the field that holds the text"
        )
    return str(hit.payload[text_field])

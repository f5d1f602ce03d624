"""The stores a job writes and which encoders' vectors each holds (dense, ColBERT, hybrid, or two stores)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from lfm_retrieval.catalog.prepare import AnyEncoder, Identity, identity
from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder
from lfm_retrieval.stores import CollectionSpec, HybridSpec, Record, Store


@dataclass
class Target:
    """One store, the positions (in the job's encoder list) of the encoders it holds, and their identity."""

    store: Store
    encoders: tuple[int, ...]
    identity: Identity

    def spec(self, encoders: Sequence[AnyEncoder]) -> CollectionSpec | HybridSpec:
        mine = [encoders[i] for i in self.encoders]
        return HybridSpec.for_encoders(*mine) if len(mine) == 2 else CollectionSpec.for_encoder(mine[0])


def vector_field(encoder: AnyEncoder) -> str:
    """The Record field an encoder's output goes to."""
    return "token_vectors" if isinstance(encoder, ColBERTEncoder) else "vector"


def resolve(
    encoder: AnyEncoder, store: Store, colbert: ColBERTEncoder | None, colbert_store: Store | None
) -> tuple[list[AnyEncoder], list[Target]]:
    """The job's encoders and targets for its mode; a store of the wrong kind is a ValueError."""
    if colbert is None:
        if colbert_store is not None:
            raise ValueError("colbert_store needs a colbert encoder")
        wanted = "multivector" if isinstance(encoder, ColBERTEncoder) else "dense"
        encoders: list[AnyEncoder] = [encoder]
        layout: list[tuple[Store, tuple[int, ...]]] = [(store, (0,))]
    elif not isinstance(encoder, DenseEncoder):
        raise ValueError("with colbert=, encoder must be the dense encoder")
    elif colbert_store is None:
        wanted, encoders, layout = "hybrid", [encoder, colbert], [(store, (0, 1))]
    else:
        wanted, encoders = "dense", [encoder, colbert]
        layout = [(store, (0,)), (colbert_store, (1,))]
        if colbert_store.kind != "multivector":
            raise ValueError(f"colbert_store must be a multivector store, not a {colbert_store.kind} one")
    if store.kind != wanted:
        raise ValueError(f"these encoders need a {wanted} store, not a {store.kind} one ({store.uri!r})")
    targets = [Target(s, idx, identity([encoders[i] for i in idx])) for s, idx in layout]
    return encoders, targets


def build_records(
    target: Target,
    fields: Sequence[str],
    items: Sequence[tuple[str, dict[str, Any], str]],
    vectors: dict[int, Sequence[Any]],
) -> list[Record]:
    """Records of (key, payload, fingerprint) items with ``vectors[encoder position][i]`` for item i,
    in the Record field ``fields[encoder position]``."""
    records = []
    for i, (key, payload, fp) in enumerate(items):
        fields_ = {fields[e]: vectors[e][i] for e in target.encoders}
        records.append(Record(key, payload=payload, fingerprint=fp, **fields_))
    return records


def write(
    store: Store, records: Sequence[Record], payload_only: Sequence[tuple[str, dict[str, Any], str]]
) -> tuple[int, int]:
    """Upsert ``records`` (whole batch, one call) and rewrite the payloads of ``payload_only`` items.

    Returns (records written, payloads updated)."""
    written = store.upsert(records, batch_size=max(len(records), 1)) if records else 0
    updated = store.update_payloads(payload_only) if payload_only else 0
    return written, updated

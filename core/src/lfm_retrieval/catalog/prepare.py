"""What both engines share: a record's key, text and payload, its fingerprint, and what to do with it.

Every stored record carries a fingerprint ``<text part>.<payload part>``: a hash of what
was encoded (each model, its document prompt or prefix, the text) and a hash of the
payload. Comparing a record's new fingerprint with the stored one decides whether it is
unchanged, needs only its payload rewritten, or must be encoded again. The parts here
need no model: a Ray task can run them with only the encoders' identities.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from lfm_retrieval.catalog.sources import SourceRow
from lfm_retrieval.catalog.template import MISSING, Template, lookup
from lfm_retrieval.encoders import ColBERTEncoder, DenseEncoder, Side
from lfm_retrieval.errors import BadRecordError

AnyEncoder = DenseEncoder | ColBERTEncoder
Action = Literal["unchanged", "payload", "encode"]
#: What decides an encoder's document vectors besides the text: (model id, prompt or ColBERT prefix).
Identity = tuple[str, ...]


def identity(encoders: AnyEncoder | Sequence[AnyEncoder]) -> Identity:
    """The encoders' model ids and document sides, in order (what a fingerprint's text part covers)."""
    encoders = [encoders] if isinstance(encoders, (DenseEncoder, ColBERTEncoder)) else list(encoders)
    parts: list[str] = []
    for encoder in encoders:
        if isinstance(encoder, DenseEncoder):
            side = encoder.prompts[Side.DOCUMENT]
        else:
            side = f"colbert|{encoder.document_prefix}|{encoder.document_length}"
        parts += [encoder.model_id, side]
    return tuple(parts)


def fingerprint(encoders: AnyEncoder | Sequence[AnyEncoder] | Identity, text: str, payload: Mapping[str, Any]) -> str:
    """``<text part>.<payload part>``: the text part covers each model, its document prompt or prefix,
    and the text; ``encoders`` may be given as their :func:`identity`."""
    parts = (
        encoders if isinstance(encoders, tuple) and all(isinstance(p, str) for p in encoders) else identity(encoders)
    )
    text_part = hashlib.sha256("\0".join([*parts, text]).encode()).hexdigest()
    payload_part = hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()
    return f"{text_part[:32]}.{payload_part[:16]}"


def decide(stored: str | None, new: str) -> Action:
    """Unchanged (same fingerprint), payload only (same text part), or encode (new or changed text)."""
    if stored == new:
        return "unchanged"
    if stored is not None and stored.split(".")[0] == new.split(".")[0]:
        return "payload"
    return "encode"


@dataclass(frozen=True)
class Prepared:
    """A record ready for the store: its key, the text to embed and the payload."""

    position: str
    key: str
    text: str
    payload: dict[str, Any]


@dataclass(frozen=True)
class Preparer:
    """Renders key, text and payload from a source row (picklable: Ray tasks run it)."""

    text: Template
    key: Template
    payload: tuple[str, ...] = ()

    @classmethod
    def of(cls, text: str, key: str, payload: Sequence[str] = ()) -> Preparer:
        return cls(Template(text), Template(key), tuple(payload))

    def prepare(self, row: SourceRow) -> Prepared:
        """The prepared record, or BadRecordError naming the row's position and problem."""
        if row.error:
            raise BadRecordError(row.position, row.error)
        key = self.key.render(row.fields, row.position)
        text = self.text.render(row.fields, row.position)
        payload = {}
        for name in self.payload:
            value = lookup(row.fields, name)
            if value is not MISSING and value is not None:
                payload[name] = value
        return Prepared(row.position, key, text, payload)


def duplicate(position: str, key: str) -> BadRecordError:
    """The error of a record whose key an earlier record has."""
    return BadRecordError(position, f"duplicate key {key!r} (an earlier record has it)")

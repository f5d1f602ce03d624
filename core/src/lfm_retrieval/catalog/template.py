"""Rendering the text to embed (and the record key) from a template over a record's fields."""

from __future__ import annotations

import string
from collections.abc import Mapping
from typing import Any

from lfm_retrieval.errors import BadRecordError

MISSING = object()  # what lookup() returns for an absent field


def lookup(fields: Mapping[str, Any], path: str) -> Any:
    """A possibly nested field: ``"title"``, ``"attributes.colour"``, ``"images.0.alt"``."""
    value: Any = fields
    for part in path.split("."):
        if isinstance(value, Mapping) and part in value:
            value = value[part]
        elif isinstance(value, (list, tuple)) and part.isdigit() and int(part) < len(value):
            value = value[int(part)]
        else:
            return MISSING
    return value


class Template:
    """A ``str.format``-style template whose fields are (nested) record fields.

    ``Template("{title}. {brand}. {description}")``; a field may be a dotted path. A
    missing, empty or non-text field (a dict or list) is a BadRecordError naming the
    field; numbers and booleans are written as text.
    """

    def __init__(self, text: str) -> None:
        try:
            parsed = list(string.Formatter().parse(text))
        except ValueError as exc:
            raise ValueError(f"template {text!r} is malformed: {exc}") from exc
        self.text = text
        self.parts = [(literal, name, spec) for literal, name, spec, _ in parsed]
        self.fields = [name for _, name, _ in self.parts if name]
        if not self.fields:
            raise ValueError(f"template {text!r} names no field, e.g. '{{title}}'")
        if any(not name.replace(".", "").replace("_", "").replace("-", "").isalnum() for name in self.fields):
            raise ValueError(f"template {text!r}: field names are dotted paths of letters, digits, '_' and '-'")

    def render(self, fields: Mapping[str, Any], position: str) -> str:
        out = []
        for literal, name, spec in self.parts:
            out.append(literal)
            if not name:
                continue
            value = lookup(fields, name)
            if value is MISSING or value is None:
                raise BadRecordError(position, f"has no field {name!r} (template {self.text!r})")
            if isinstance(value, (Mapping, list, tuple, bytes)):
                raise BadRecordError(position, f"field {name!r} is {type(value).__name__}, not text")
            text = format(value, spec) if spec else str(value)
            if not text.strip():
                raise BadRecordError(position, f"field {name!r} is empty")
            out.append(text)
        return "".join(out)

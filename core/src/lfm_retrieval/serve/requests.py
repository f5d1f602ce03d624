"""Request bodies of the server's routes (TEI's and OpenAI's shapes) and their checks."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from lfm_retrieval.encoders import Side
from lfm_retrieval.errors import LFMRetrievalError, check_query

SIDES = tuple(side.value for side in Side)


class RequestError(LFMRetrievalError, ValueError):
    """A request the server refuses; ``status`` is the HTTP status it answers with."""

    def __init__(self, message: str, status: int = 422) -> None:
        super().__init__(message)
        self.status = status


class EmbedRequest(BaseModel):
    """``POST /embed`` and ``POST /embed_multivector`` (TEI's shape; ``prompt_name`` is required)."""

    model_config = ConfigDict(extra="ignore")
    inputs: Any = None
    prompt_name: Any = None
    normalize: bool = True
    """Served as the model was loaded (unit length unless started otherwise); the other value is refused."""
    truncate: bool = True
    """Only true: texts beyond the model's max_length are cut to it; false is refused."""


class OpenAIEmbeddingsRequest(BaseModel):
    """``POST /v1/embeddings``: OpenAI's body plus ``input_type`` = ``query`` | ``document``."""

    model_config = ConfigDict(extra="ignore")
    input: Any = None
    input_type: Any = None
    model: str | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = None
    user: str | None = None


class RerankRequest(BaseModel):
    """``POST /rerank`` (TEI's shape)."""

    model_config = ConfigDict(extra="ignore")
    query: Any = None
    texts: Any = None
    return_text: bool = False
    raw_scores: bool = True
    """Only true: the scores are the raw MaxSim or cosine, with no activation; false is refused."""
    truncate: bool = True
    """Only true, as in :class:`EmbedRequest`."""


class SearchRequest(BaseModel):
    """``POST /search`` over a store named at start-up."""

    model_config = ConfigDict(extra="forbid")
    store: str
    query: Any = None
    k: int = Field(default=10, ge=1, le=1000)
    filter: dict[str, Any] | None = None
    prefetch: int = Field(default=100, ge=1, le=10000)


def side_of(value: Any, field: str) -> Side:
    """The side a request names in ``field``; a missing or unknown side is refused, never guessed."""
    if value is None:
        raise RequestError(f"{field} is required: 'query' or 'document' (the side is never guessed)")
    if value not in SIDES:
        raise RequestError(f"{field} must be 'query' or 'document', not {value!r}")
    return Side(value)


def texts_of(value: Any, field: str, max_inputs: int) -> list[str]:
    """A string or a non-empty list of non-blank strings, at most ``max_inputs`` of them."""
    if value is None:
        raise RequestError(f"{field} is required: a string or a list of strings")
    texts = [value] if isinstance(value, str) else value
    if not isinstance(texts, list):
        raise RequestError(f"{field} must be a string or a list of strings, not {type(value).__name__}")
    if not texts:
        raise RequestError(f"{field} is empty; send at least one text")
    if len(texts) > max_inputs:
        raise RequestError(f"{field} has {len(texts)} texts; this server takes at most {max_inputs} per request", 413)
    return [check_query(text, f"{field}[{i}]") for i, text in enumerate(texts)]


#: Why a request option can take only the value the server serves.
_ONLY = {
    "normalize": "the server returns its model's vectors as loaded (normalisation is a start-up setting)",
    "truncate": "texts longer than the model's max_length are cut to it; send shorter texts to keep every token",
    "raw_scores": "the scores are the model's raw MaxSim or cosine similarities, with no activation to apply",
}


def check_options(body: BaseModel, **served: bool) -> None:
    """A 422 for an option the request sets to a value other than the one this server serves
    (``served``: option -> the served value); an option is never silently ignored."""
    for option, value in served.items():
        sent = getattr(body, option)
        if option in body.model_fields_set and sent != value:
            raise RequestError(
                f"{option}={str(sent).lower()} is not supported: {_ONLY[option]} "
                f"(omit {option} or send {str(value).lower()})"
            )

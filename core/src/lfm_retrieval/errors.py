"""Errors raised by lfm_retrieval, each naming what was wrong."""


class LFMRetrievalError(Exception):
    """Base class of the errors this package raises on purpose."""


class InvalidTextError(LFMRetrievalError, ValueError):
    """A text to encode is not a non-empty string; the message names its position."""


def check_query(query: object) -> str:
    """Return ``query`` if it is a non-blank string, else raise InvalidTextError saying why
    (for framework entry points that take one query, before any tokenizer sees it)."""
    if query is None:
        raise InvalidTextError("query is None; expected a non-empty string")
    if not isinstance(query, str):
        raise InvalidTextError(f"query is {type(query).__name__}; expected a non-empty string")
    if not query.strip():
        raise InvalidTextError("query is empty or only whitespace; expected a non-empty string")
    return query


class ModelLoadError(LFMRetrievalError, OSError):
    """A model could not be found or is not of the expected kind; the message names it."""


class InvalidRecordError(LFMRetrievalError, ValueError):
    """A record cannot be stored (bad key, vector or payload); the message names the record."""


class InvalidFilterError(LFMRetrievalError, ValueError):
    """A metadata filter is malformed; the message says which part."""


class CollectionMismatchError(LFMRetrievalError, ValueError):
    """An existing collection was made for another dimension, distance, vector type or model."""


class StorePluginError(LFMRetrievalError, ImportError):
    """An installed store adapter failed to import; the message names its distribution, the failed
    import and the installed versions of what it depends on."""


class StoreUnavailableError(LFMRetrievalError, ConnectionError):
    """A store's server could not be reached; the message names the URI."""


class BadRecordError(LFMRetrievalError, ValueError):
    """A catalog record cannot be indexed; carries its position (``file:line``) and the problem."""

    def __init__(self, position: str, problem: str) -> None:
        super().__init__(f"record {position}: {problem}")
        self.position, self.problem = position, problem

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # survives pickling (a Ray task raising it)
        return type(self), (self.position, self.problem)

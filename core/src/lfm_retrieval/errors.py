"""Errors raised by lfm_retrieval, each naming what was wrong."""


class LFMRetrievalError(Exception):
    """Base class of the errors this package raises on purpose."""


class InvalidTextError(LFMRetrievalError, ValueError):
    """A text to encode is not a non-empty string; the message names its position."""


def check_query(text: object, name: str = "query") -> str:
    """Return ``text`` if it is a non-blank string, else raise InvalidTextError naming it as ``name``
    (``"query"``, ``"texts[3]"``, ...): the one check of a text before any tokenizer sees it."""
    if text is None:
        raise InvalidTextError(f"{name} is None; expected a non-empty string")
    if not isinstance(text, str):
        raise InvalidTextError(f"{name} is {type(text).__name__}; expected a non-empty string")
    if not text.strip():
        raise InvalidTextError(f"{name} is empty or only whitespace; expected a non-empty string")
    return text


class ModelLoadError(LFMRetrievalError, OSError):
    """A model could not be found or is not of the expected kind; the message names it."""


class QueueFull(LFMRetrievalError, RuntimeError):
    """A micro-batcher's (or a server's) queue is full; retry later (HTTP 429)."""


class BatcherClosed(LFMRetrievalError, RuntimeError):
    """The micro-batcher was closed; it accepts no new requests."""


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

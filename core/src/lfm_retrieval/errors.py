"""Errors raised by lfm_retrieval, each naming what was wrong."""


class LFMRetrievalError(Exception):
    """Base class of the errors this package raises on purpose."""


class InvalidTextError(LFMRetrievalError, ValueError):
    """A text to encode is not a non-empty string; the message names its position."""


class ModelLoadError(LFMRetrievalError, OSError):
    """A model could not be found or is not of the expected kind; the message names it."""

"""An encoder from its serialisable description: the one place an :class:`EncoderSpec` becomes an encoder."""

from __future__ import annotations

from lfm_retrieval.encoders.colbert import ColBERTEncoder
from lfm_retrieval.encoders.dense import DenseEncoder
from lfm_retrieval.encoders.spec import EncoderSpec


def build_encoder(
    spec: EncoderSpec, cls: type[DenseEncoder | ColBERTEncoder] | None = None
) -> DenseEncoder | ColBERTEncoder:
    """The encoder ``spec`` describes (``cls``: a subclass of the kind's encoder to build instead).

    >>> build_encoder(EncoderSpec("dense", "path/to/model", quantize="int8"))  # doctest: +SKIP
    """
    kind_class = DenseEncoder if spec.kind == "dense" else ColBERTEncoder
    if cls is not None and not issubclass(cls, kind_class):
        raise TypeError(f"cls={cls.__name__} is not a {kind_class.__name__}, the encoder of a {spec.kind!r} spec")
    encoder_class = cls or kind_class
    return encoder_class(spec.model, **spec.encoder_kwargs())

"""Model classes the encoders need that transformers does not ship."""

from lfm_retrieval.models.lfm2_bidirectional import (
    ARCHITECTURE,
    Lfm2BidirectionalModel,
    is_bidirectional_checkpoint,
    register,
)

register()

__all__ = ["ARCHITECTURE", "Lfm2BidirectionalModel", "is_bidirectional_checkpoint", "register"]

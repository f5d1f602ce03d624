"""Model classes the encoders need that transformers does not ship."""

from lfm_retrieval.models.lfm2_bidirectional import (
    ARCHITECTURE,
    MODEL_TYPE,
    Lfm2BidirectionalConfig,
    Lfm2BidirectionalModel,
    is_bidirectional_backbone,
    is_bidirectional_checkpoint,
    register,
)

register()

__all__ = [
    "ARCHITECTURE",
    "MODEL_TYPE",
    "Lfm2BidirectionalConfig",
    "Lfm2BidirectionalModel",
    "is_bidirectional_backbone",
    "is_bidirectional_checkpoint",
    "register",
]

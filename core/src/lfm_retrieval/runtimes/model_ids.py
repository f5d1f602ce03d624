"""Which model: the LFM2.5 checkpoints' Hub ids (what a runtime loads when given no model) and the
short model id that stores record."""

LFM25_EMBEDDING = "LiquidAI/LFM2.5-Embedding-350M"
LFM25_COLBERT = "LiquidAI/LFM2.5-ColBERT-350M"


def model_id_of(model_name: str) -> str:
    """A model's name without its folder or Hub organisation (what stores record)."""
    return model_name.rstrip("/\\").replace("\\", "/").rsplit("/", 1)[-1]

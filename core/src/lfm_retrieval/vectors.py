"""Vector arithmetic that runtimes, scoring and stores share."""

from __future__ import annotations

import numpy as np


def unit_rows(array: np.ndarray) -> np.ndarray:
    """``array`` as float32 with each row rescaled to unit L2 norm (all-zero rows stay zero). Also what
    a bfloat16 model's vectors go through: its own normalisation leaves norms off by up to ~0.5 %."""
    array = np.asarray(array, dtype=np.float32)
    return array / np.maximum(np.linalg.norm(array, axis=-1, keepdims=True), 1e-12)

"""One call that makes a run repeatable (as minGPT's ``utils.set_seed``)."""
from __future__ import annotations

import random

import numpy as np


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global generator and torch (CPU and CUDA).

    The same seed gives the same numbers on the same machine and library versions.
    torch is seeded only if it is installed, so notebook 01 runs without it.
    """
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise TypeError(f"seed must be an int, got {type(seed).__name__}: {seed!r}")
    random.seed(seed)
    np.random.seed(seed % 2**32)
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a course dependency
        return
    torch.manual_seed(seed)  # also seeds every CUDA device

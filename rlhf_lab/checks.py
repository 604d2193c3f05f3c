"""Self-checks for the exercises (after nn-zero-to-hero's ``cmp(name, mine, ref)``)."""
from __future__ import annotations

import numpy as np


def check(name: str, mine, ref, atol: float = 1e-6, rtol: float = 1e-4) -> bool:
    """Compare a learner's answer with the reference; print what is right and how far off the rest is.

    Works for numbers, sequences, NumPy arrays and torch tensors (anything ``np.asarray`` takes),
    and for strings/other objects by equality. Returns True when the answer is right.
    """
    if mine is None or mine is Ellipsis:
        print(f"[ ] {name}: not answered yet (replace the ... with your answer)")
        return False
    if isinstance(ref, str) or not _numeric(ref):
        ok = mine == ref
        print(f"[{'x' if ok else ' '}] {name}: " + ("correct" if ok else f"got {mine!r}, expected {ref!r}"))
        return ok
    a, b = _array(mine), _array(ref)
    if a.shape != b.shape:
        print(f"[ ] {name}: shape {a.shape} but expected {b.shape}")
        return False
    ok = bool(np.allclose(a, b, atol=atol, rtol=rtol))
    diff = float(np.max(np.abs(a - b))) if a.size else 0.0
    print(f"[{'x' if ok else ' '}] {name}: " + ("correct" if ok else f"off by up to {diff:.4g}"))
    return ok


def _numeric(x) -> bool:
    try:
        return np.asarray(_array(x)).dtype.kind in "biuf"
    except Exception:
        return False


def _array(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=float)

"""rlhf_lab: the helper package of the rlhf-lab course.

Notebooks teach; this package keeps the one copy of every piece they reuse.
Modules are imported on demand (``from rlhf_lab import bandit``) so that a
notebook pays only for what it uses: importing ``rlhf_lab`` itself is cheap.
"""
from __future__ import annotations

import os as _os

# The course sends nothing home: no usage telemetry from huggingface_hub (TRL, transformers and datasets use
# it). Set before they are imported; a value you set yourself wins.
_os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from rlhf_lab.paths import ARTIFACTS, DATA, REPO_ROOT
from rlhf_lab.seed import set_seed

__all__ = ["set_seed", "ARTIFACTS", "DATA", "REPO_ROOT"]
__version__ = "0.1.0"

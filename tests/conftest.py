"""Shared test set-up: notebooks and tests write their artifacts to a throw-away folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

# Set before any kernel starts, so every notebook executed by nbval or papermill inherits it.
os.environ.setdefault("RLHF_LAB_ARTIFACTS", str(Path(tempfile.mkdtemp(prefix="rlhf-lab-artifacts-"))))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

"""Shared test set-up: notebooks and tests write their artifacts to a throw-away folder."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest

# Set before any kernel starts, so every notebook executed by nbval or papermill inherits it.
os.environ.setdefault("RLHF_LAB_ARTIFACTS", str(Path(tempfile.mkdtemp(prefix="rlhf-lab-artifacts-"))))
os.environ.setdefault("MPLBACKEND", "Agg")
os.environ.setdefault("HF_HUB_OFFLINE", "1")


@pytest.fixture(scope="module")
def one_thread():
    """Tiny models run fastest on one thread, and a busy shared CPU makes two threads wait on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)

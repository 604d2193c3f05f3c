"""Where the course keeps its files.

``DATA`` holds what the repository ships (prompts, tokenizer, tiny checkpoint).
``ARTIFACTS`` holds what notebooks make (ratings, trained models) so that a later
notebook can pick up where an earlier one stopped; it is not tracked by git.
Set ``RLHF_LAB_ARTIFACTS`` to put it elsewhere (the tests do, to stay isolated).
"""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
DATA = REPO_ROOT / "data"
ARTIFACTS = Path(os.environ.get("RLHF_LAB_ARTIFACTS", REPO_ROOT / "artifacts"))

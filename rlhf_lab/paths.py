"""Where the course keeps its files.

``DATA`` holds what the repository ships (prompts, tokenizer, tiny checkpoint).
``ARTIFACTS`` holds what notebooks make (ratings, trained models) so that a later
notebook can pick up where an earlier one stopped; it is not tracked by git.
Set ``RLHF_LAB_ARTIFACTS`` to put it elsewhere (the tests do, to stay isolated).

The package is meant to be used from a clone of the course (``pip install -e .``): its data
and notebooks live there, not inside the package. An install that copied only the package
(``pip install .``, or from git) finds no data next to it and stops at import with one
sentence saying so, instead of pointing every path into ``site-packages``; set
``RLHF_LAB_HOME`` to a clone of the course to use such an install anyway.
"""
from __future__ import annotations

import os
from pathlib import Path


def _course_folder() -> Path:
    """The course's folder: ``RLHF_LAB_HOME``, else the folder above this package (a clone)."""
    if "RLHF_LAB_HOME" in os.environ:
        home = Path(os.environ["RLHF_LAB_HOME"]).expanduser().resolve()
        if not (home / "data").is_dir():
            raise ImportError(f"RLHF_LAB_HOME={os.environ['RLHF_LAB_HOME']} is not a clone of the rlhf-lab course "
                              f"(no data folder in {home})")
        return home
    here = Path(__file__).resolve().parent.parent
    if not (here / "data").is_dir():
        raise ImportError(f"rlhf_lab was installed without the course it belongs to (no data folder in {here}): "
                          "clone the course and install it with `pip install -e <clone>`, or set RLHF_LAB_HOME "
                          "to the clone's folder")
    return here


REPO_ROOT = _course_folder()
DATA = REPO_ROOT / "data"
ARTIFACTS = Path(os.environ.get("RLHF_LAB_ARTIFACTS", REPO_ROOT / "artifacts")).expanduser()

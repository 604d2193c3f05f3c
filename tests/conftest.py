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


_NOTEBOOK_TIMES: list = []


@pytest.fixture(scope="module")
def tiny(one_thread):
    """The shipped tiny policy and its tokenizer, loaded once per module; tests train deep copies of it (on one
    thread)."""
    from rlhf_lab.models import DEFAULT_POLICY, load_policy

    if not (DEFAULT_POLICY / "config.json").exists():
        pytest.skip(f"no tiny policy at {DEFAULT_POLICY}: build it with python -m rlhf_lab.pretrain")
    return load_policy(DEFAULT_POLICY)


@pytest.fixture(scope="session")
def notebook_times():
    """Run results of the course notebooks executed in this session (rlhf_lab.course.RunResult)."""
    return _NOTEBOOK_TIMES


def pytest_terminal_summary(terminalreporter):
    """Print each executed notebook's run time against its budget (COURSE.md) at the end of the session."""
    if not _NOTEBOOK_TIMES:
        return
    terminalreporter.section("notebook run times (budget from COURSE.md, 2-core CPU)")
    for r in _NOTEBOOK_TIMES:
        over = "  over budget" if r.budget and r.seconds > r.budget else ""
        terminalreporter.write_line(f"{r.name:<28}{r.seconds:7.1f} s  (budget {r.budget or 0:.0f} s){over}")
    terminalreporter.write_line(f"{'total':<28}{sum(r.seconds for r in _NOTEBOOK_TIMES):7.1f} s")


def pytest_collection_modifyitems(config, items):
    """Mark every unit test ``quick``: not a course notebook, not a solution notebook (nbval), not the browser.

    ``bash scripts/test.sh -m quick`` then runs the unit tests alone (a few minutes), for everyday work;
    the full suite, without ``-m``, is what CI runs.
    """
    for item in items:
        solution = item.nodeid.startswith("notebooks/")
        if not solution and item.get_closest_marker("notebook") is None and item.get_closest_marker("browser") is None:
            item.add_marker(pytest.mark.quick)

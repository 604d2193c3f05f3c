"""The Colab install cell, run here with a fake ``google.colab``: it keeps Colab's torch and ipywidgets, retries
a failed install on the next run, and puts the artifacts on Drive only when asked."""
from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import types

import pytest

from rlhf_lab.course import GITHUB_REPO, INSTALL_CELL

COLAB_VERSIONS = {"torch": "2.8.0+cu126", "ipywidgets": "7.7.1"}


@pytest.fixture
def colab(monkeypatch, tmp_path):
    """A fake Colab: ``google.colab`` imported, pip and git recorded instead of run, a Drive to mount."""
    calls: list[list[str]] = []
    state = {"installed": False, "pip_fails": False, "mounted": None}

    def run(cmd, check=False, **kwargs):
        calls.append(list(cmd))
        if "pip" in cmd:
            if state["pip_fails"]:
                raise subprocess.CalledProcessError(1, cmd)
            state["installed"] = True
        return subprocess.CompletedProcess(cmd, 0)

    def version(name):
        if name == "rlhf-lab" and state["installed"]:
            return "0.1.0"
        if name in COLAB_VERSIONS:
            return COLAB_VERSIONS[name]
        raise importlib.metadata.PackageNotFoundError(name)

    colab_pkg = types.ModuleType("google.colab")
    colab_pkg.drive = types.SimpleNamespace(mount=lambda where: state.update(mounted=where))
    monkeypatch.setitem(sys.modules, "google.colab", colab_pkg)
    monkeypatch.setattr(subprocess, "run", run)
    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr("os.chdir", lambda folder: state.update(cwd=folder))
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("RLHF_LAB_ARTIFACTS", "unset")   # so that teardown restores what was there before
    monkeypatch.delenv("RLHF_LAB_ARTIFACTS")
    return calls, state


def run_cell(use_drive: bool = False) -> None:
    source = INSTALL_CELL.format(repo=GITHUB_REPO, folder="notebooks")
    if use_drive:
        source = source.replace("use_drive = False", "use_drive = True")
    exec(compile(source, "install-cell", "exec"), {})


def test_install_keeps_colabs_torch_and_ipywidgets(colab):
    calls, state = colab
    run_cell()
    pip = [c for c in calls if "pip" in c]
    assert len(pip) == 1 and "-c" in pip[0]
    constraints = open(pip[0][pip[0].index("-c") + 1]).read().split()
    assert constraints == ["torch==2.8.0+cu126", "ipywidgets==7.7.1"]
    assert any(c[:2] == ["git", "clone"] for c in calls) and state["cwd"] == "/content/rlhf-lab/notebooks"
    assert state["mounted"] is None and "RLHF_LAB_ARTIFACTS" not in __import__("os").environ


def test_a_failed_install_is_retried_on_the_next_run(colab):
    calls, state = colab
    state["pip_fails"] = True
    with pytest.raises(subprocess.CalledProcessError):
        run_cell()
    state["pip_fails"] = False
    run_cell()                                    # the clone may be there; the install is not: pip again
    assert sum("pip" in c for c in calls) == 2
    n = len(calls)
    run_cell()                                    # installed now: nothing to do
    assert [c for c in calls[n:] if "pip" in c] == []


def test_use_drive_puts_the_artifacts_on_drive(colab, monkeypatch):
    import os

    calls, state = colab
    run_cell(use_drive=True)
    assert state["mounted"] == "/content/drive"
    assert os.environ["RLHF_LAB_ARTIFACTS"] == "/content/drive/MyDrive/rlhf-lab/artifacts"

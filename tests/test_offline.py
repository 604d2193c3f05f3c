"""Offline means offline: with HF_HUB_OFFLINE unset (as a learner runs the course), notebook 09, which imports TRL,
datasets and huggingface_hub and trains TRL's DPOTrainer, tries to reach no host at all (review row 100)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from rlhf_lab import course

GUARD = Path(__file__).parent / "netguard"


def test_the_guard_logs_and_refuses(tmp_path):
    import subprocess
    import sys

    log = tmp_path / "net.log"
    env = {k: v for k, v in os.environ.items()} | {"PYTHONPATH": str(GUARD), "RLHF_LAB_NET_LOG": str(log)}
    probe = "import socket\ntry:\n    socket.getaddrinfo('huggingface.co', 443)\nexcept OSError as e:\n    print(e)"
    out = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True)
    assert "network blocked" in out.stdout and "huggingface.co" in log.read_text()


@pytest.mark.notebook
def test_notebook_09_reaches_no_host_with_the_hub_flag_unset(tmp_path, monkeypatch):
    log = tmp_path / "net.log"
    for name in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "TRANSFORMERS_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(GUARD), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    monkeypatch.setenv("RLHF_LAB_NET_LOG", str(log))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))          # and no cache written to the real home
    path = next(p for p in course.course_notebooks() if p.name.startswith("09"))
    result = course.run_notebook(path, tmp_path / "out", {})
    assert result.ok, result.error
    attempts = log.read_text() if log.exists() else ""
    assert attempts == "", f"notebook 09 tried to reach:\n{attempts}"
    home = tmp_path / "home"
    written = sorted(str(p.relative_to(home)) for p in home.rglob("*") if p.is_file()) if home.exists() else []
    assert not [p for p in written if p.startswith(".cache/huggingface/datasets")], written

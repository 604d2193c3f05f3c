import random

import numpy as np
import pytest
import torch

import rlhf_lab
from rlhf_lab.checks import check


def _draw():
    return random.random(), float(np.random.rand()), float(torch.rand(1))


def test_set_seed_repeats_python_numpy_and_torch():
    rlhf_lab.set_seed(7)
    first = _draw()
    rlhf_lab.set_seed(7)
    assert _draw() == first
    rlhf_lab.set_seed(8)
    assert _draw() != first


def test_set_seed_rejects_non_integers():
    with pytest.raises(TypeError):
        rlhf_lab.set_seed(1.5)


def test_check_reports_right_wrong_and_unanswered(capsys):
    assert check("x", 6.6, 6.6)
    assert not check("x", 6.0, 6.6)
    assert "off by up to 0.6" in capsys.readouterr().out
    assert not check("x", ..., 6.6)
    assert "not answered" in capsys.readouterr().out
    assert not check("v", np.zeros(2), np.zeros(3))
    assert "shape" in capsys.readouterr().out
    assert check("s", "Interesting thought.", "Interesting thought.")
    assert not check("s", "Great idea!", "Interesting thought.")
    assert check("t", torch.tensor([1.0, 2.0]), np.array([1.0, 2.0]))


def test_course_run_rejects_unknown_and_malformed_parameters(capsys):
    from rlhf_lab import course

    assert course.main(["run", "05", "-p", "nosuch=1"]) == 2
    err = capsys.readouterr().err
    assert "has no parameter 'nosuch'" in err and "steps = 30" in err and "beta = 0.1" in err   # the list of parameters
    assert course.main(["run", "05", "-p", "steps=abc"]) == 2
    assert "steps='abc' has type str" in capsys.readouterr().err
    nb05 = course.select_notebooks(["05"])[0]
    assert course.check_parameters(nb05, {"seed": 1, "lr": 1, "beta": 0.5}) == []      # an int may stand for a float
    assert course.check_parameters(nb05, {"steps": 2.5, "seed": True}) != []
    nb08 = course.select_notebooks(["08"])[0]
    assert course.check_parameters(nb08, {"ratings_path": "/tmp/x.jsonl"}) == []          # an expression default


def test_an_install_without_the_course_folder_stops_at_import_with_one_sentence(tmp_path):
    """Review row 98: ``pip install .`` copies only the package; its paths must not point into site-packages."""
    import shutil
    import subprocess
    import sys
    from pathlib import Path

    import rlhf_lab

    site = tmp_path / "site-packages"
    shutil.copytree(Path(rlhf_lab.__file__).parent, site / "rlhf_lab", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in __import__("os").environ.items() if k not in ("RLHF_LAB_HOME", "PYTHONPATH")}
    probe = "import rlhf_lab; print(rlhf_lab.DATA)"
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, env=env | {"PYTHONPATH": str(site)},
                         capture_output=True, text=True)
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: rlhf_lab was installed without the course") and "pip install -e" in last
    clone = Path(rlhf_lab.REPO_ROOT)
    ok = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True,
                        env=env | {"PYTHONPATH": str(site), "RLHF_LAB_HOME": str(clone)})
    assert ok.returncode == 0 and ok.stdout.strip() == str(clone / "data")

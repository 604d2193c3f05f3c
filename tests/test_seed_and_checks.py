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

"""The Bradley-Terry loss (``bradley_terry.py``): by hand, against the direct formula and a library
implementation, its gradient, ties and extremes."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rlhf_lab.bradley_terry import bradley_terry_loss, tie_targets
from rlhf_lab.preferences import PreferenceRecord


def test_bt_loss_by_hand():
    # pair 1: r_c - r_r = 1 -> -log sigmoid(1) = log(1 + e^-1) = 0.313262
    # pair 2: r_c - r_r = 0 -> -log sigmoid(0) = log 2          = 0.693147
    # pair 3: r_c - r_r = -2 -> log(1 + e^2)                    = 2.126928
    loss = bradley_terry_loss(torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.0, 0.5, 1.0]))
    assert loss.item() == pytest.approx((0.313262 + 0.693147 + 2.126928) / 3, abs=1e-5)
    # with a margin of 1 on every pair: differences 0, -1, -3
    loss = bradley_terry_loss(torch.tensor([1.0, 0.5, -1.0]), torch.tensor([0.0, 0.5, 1.0]), margin=1.0)
    assert loss.item() == pytest.approx((0.693147 + 1.313262 + 3.048587) / 3, abs=1e-5)


def test_bt_loss_matches_direct_formula_and_library():
    g = torch.Generator().manual_seed(0)
    chosen, rejected = torch.randn(64, generator=g) * 3, torch.randn(64, generator=g) * 3
    loss = bradley_terry_loss(chosen, rejected)
    direct = -torch.log(torch.sigmoid(chosen - rejected)).mean()
    library = F.binary_cross_entropy_with_logits(chosen - rejected, torch.ones(64))
    torch.testing.assert_close(loss, direct)
    torch.testing.assert_close(loss, library)
    # targets: 1 is the plain loss; soft targets are the library's cross-entropy with those labels
    t = torch.rand(64, generator=g)
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected, targets=torch.ones(64)), loss)
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected, targets=t),
                               F.binary_cross_entropy_with_logits(chosen - rejected, t))
    # margins per pair: same as shifting the difference
    m = torch.rand(64, generator=g)
    torch.testing.assert_close(bradley_terry_loss(chosen, rejected, margin=m),
                               bradley_terry_loss(chosen - m, rejected))


def test_bt_loss_gradient_ties_and_extremes():
    diff = torch.tensor([2.0], requires_grad=True)
    bradley_terry_loss(diff, torch.zeros(1)).backward()
    assert diff.grad.item() == pytest.approx(-(1 - 1 / (1 + math.exp(-2))))   # d/dd -log sigmoid(d) = -(1 - sigmoid(d))
    # a tie (target 0.5) is happiest with equal rewards: zero gradient at d = 0, loss log 2
    d0 = torch.zeros(1, requires_grad=True)
    loss = bradley_terry_loss(d0, torch.zeros(1), targets=torch.tensor([0.5]))
    loss.backward()
    assert loss.item() == pytest.approx(math.log(2)) and d0.grad.item() == pytest.approx(0.0)
    tie = PreferenceRecord("p", "a", "b", tie=True)
    assert tie_targets([tie, PreferenceRecord("p", "a", "b")]).tolist() == [0.5, 1.0]
    # large differences stay finite (logsigmoid, not log(sigmoid))
    huge = bradley_terry_loss(torch.tensor([-200.0, 200.0]), torch.zeros(2))
    assert huge.item() == pytest.approx(100.0)
    with pytest.raises(ValueError, match="shape"):
        bradley_terry_loss(torch.zeros(3), torch.zeros(4))

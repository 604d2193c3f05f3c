"""The DPO family (sigmoid/cDPO, robust, IPO, hinge) and KTO: each loss against its paper's formula written out
here and against TRL's own implementation; robust DPO's unbiasedness; the errors; short runs on the tiny policy."""
from __future__ import annotations

import copy
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhf_lab.dpo import DPOConfig, LOSS_TYPES, dpo_loss, train_dpo
from rlhf_lab.kto import (KTOConfig, KTOExample, examples_from_scores, kl_estimate, kto_loss,
                          mismatched_responses, train_kto)
from rlhf_lab.models import frozen_copy
from rlhf_lab.preferences import PreferenceRecord, ScoreRecord
from rlhf_lab.bradley_terry import bradley_terry_loss


def random_logps(seed: int, batch: int = 16, n: int = 4) -> list[torch.Tensor]:
    """``n`` (batch,) float64 tensors of sequence log-probs in [-40, 0] (policy chosen/rejected, ref chosen/rejected)."""
    g = torch.Generator().manual_seed(seed)
    return [-torch.rand(batch, generator=g, dtype=torch.float64) * 40 for _ in range(n)]


def log_sigmoid(x: float) -> float:
    return -math.log1p(math.exp(-x)) if x >= 0 else x - math.log1p(math.exp(x))


def paper_loss(loss_type: str, h: float, beta: float, eps: float) -> float:
    """One pair's loss, written out from each paper (h: the gap of the two log-ratios)."""
    if loss_type == "sigmoid":   # DPO Eq. 7; cDPO with eps > 0
        return -(1 - eps) * log_sigmoid(beta * h) - eps * log_sigmoid(-beta * h)
    if loss_type == "robust":    # Chowdhury et al. 2024, Sec. 3
        return (-(1 - eps) * log_sigmoid(beta * h) + eps * log_sigmoid(-beta * h)) / (1 - 2 * eps)
    if loss_type == "ipo":       # Azar et al. 2023, Eq. 17
        return (h - 1 / (2 * beta)) ** 2
    if loss_type == "hinge":     # SLiC, TRL's scaling
        return max(0.0, 1 - beta * h)
    raise AssertionError(loss_type)


CASES = [("sigmoid", 0.0), ("sigmoid", 0.1), ("sigmoid", 0.3), ("robust", 0.0), ("robust", 0.1), ("robust", 0.3),
         ("ipo", 0.0), ("hinge", 0.0)]


# ----------------------------------------------------------------------------- against the papers
@pytest.mark.parametrize("loss_type,eps", CASES)
@pytest.mark.parametrize("beta", [0.1, 0.5, 2.0])
def test_each_loss_matches_its_paper(loss_type, eps, beta):
    pc, pr, rc, rr = random_logps(seed=int(beta * 10) + len(loss_type))
    loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta, loss_type=loss_type, label_smoothing=eps)
    hs = [(a - c) - (b - d) for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    expected = sum(paper_loss(loss_type, h, beta, eps) for h in hs) / len(hs)
    assert loss.item() == pytest.approx(expected, rel=1e-10)
    assert torch.allclose(chosen_rewards, beta * (pc - rc)) and torch.allclose(rejected_rewards, beta * (pr - rr))
    if loss_type == "hinge" and beta == 0.1:   # both sides of the hinge are exercised
        assert min(beta * h for h in hs) < 1 < max(beta * h for h in hs)


def test_hand_computed_values():
    # one pair, h = 1: IPO with beta = 0.25 wants h = 2, loss (1 - 2)^2 = 1; hinge with beta = 0.5: relu(1 - 0.5) = 0.5;
    # robust with eps = 0.25, beta = 1: (-(0.75) log sigmoid(1) + 0.25 log sigmoid(-1)) / 0.5
    #   = (0.75 * 0.313262 - 0.25 * 1.313262) / 0.5 = -0.186738: below 0, since robust DPO is an unbiased
    #   estimate of the clean loss, not a log-likelihood
    one = [torch.tensor([v]) for v in (-2.0, -4.0, -3.0, -4.0)]   # h = (-2 + 3) - (-4 + 4) = 1
    assert dpo_loss(*one, 0.25, loss_type="ipo")[0].item() == pytest.approx(1.0)
    assert dpo_loss(*one, 0.5, loss_type="hinge")[0].item() == pytest.approx(0.5)
    robust = (-0.75 * math.log(1 / (1 + math.exp(-1))) + 0.25 * math.log(1 / (1 + math.exp(1)))) / 0.5
    assert dpo_loss(*one, 1.0, loss_type="robust", label_smoothing=0.25)[0].item() == pytest.approx(robust, abs=1e-6)
    assert robust == pytest.approx(-0.186738, abs=1e-6)


# ----------------------------------------------------------------------------- against TRL's DPOTrainer
def trl_dpo_loss(loss_type, beta, pc, pr, rc, rr, label_smoothing=0.0, lengths=None):
    """TRL's own loss, from ``trl/trainer/dpo_trainer.py::DPOTrainer._compute_loss`` (TRL >= 1.0), on given
    sequence log-probs, without building a trainer.

    The method is called on a bare instance (``object.__new__``) carrying only the attributes it reads. A
    stand-in model returns each response's log-prob in its first completion column and 0 in the others, so TRL's
    sum over tokens is the given value; ``lengths`` (2B,) sets the completion-mask length of each row (chosen rows
    then rejected rows), which only "ipo" reads (it divides the log-ratios by it).
    """
    trl = pytest.importorskip("trl", reason="TRL is the optional test extra: pip install trl")
    try:
        from trl import DPOTrainer
    except Exception as e:  # TRL imports lazily: a TRL too old for the installed transformers fails only here
        pytest.skip(f"TRL {trl.__version__} cannot import DPOTrainer here: {e}")
    if "_compute_loss" not in vars(DPOTrainer):
        pytest.skip(f"TRL {trl.__version__} has no DPOTrainer._compute_loss (TRL < 1.0 keeps the loss in dpo_loss)")

    trainer = object.__new__(DPOTrainer)
    identity = lambda x: x  # noqa: E731  (one process: gathering is the identity)
    trainer.accelerator = SimpleNamespace(device=torch.device("cpu"), gather=identity, gather_for_metrics=identity)
    trainer.beta, trainer.label_smoothing = beta, label_smoothing
    trainer.loss_type, trainer.loss_types, trainer.loss_weights = loss_type, [loss_type], [1.0]
    trainer.f_divergence_type, trainer.f_divergence_params = "reverse_kl", {}
    trainer.use_weighting, trainer.aux_loss_enabled, trainer.ld_alpha = False, False, None
    trainer.precompute_ref_logps, trainer._total_train_tokens, trainer._tp_size = True, 0, 1
    trainer._metrics = defaultdict(lambda: defaultdict(list))

    logps = torch.cat([pc, pr])                   # TRL's batch: chosen rows, then rejected rows
    n = len(logps)
    lengths = torch.ones(n, dtype=torch.long) if lengths is None else lengths
    width = int(lengths.max()) + 1                # one prompt column, then the completion
    completion_mask = (torch.arange(width) >= width - lengths.unsqueeze(1)).long()   # (2B, width), right-aligned

    class StandInModel:
        training = True

        def __call__(self, **kwargs):
            column = torch.zeros(n, width - 1, dtype=logps.dtype)
            column[torch.arange(n), width - 1 - lengths] = logps   # the first completion token carries it all
            return SimpleNamespace(log_probs=column, entropy=torch.zeros_like(column),
                                   mean_logits=torch.zeros_like(column), is_top1=torch.zeros_like(column, dtype=bool))

    trainer.model = StandInModel()
    inputs = {"input_ids": torch.zeros(n, width, dtype=torch.long), "attention_mask": torch.ones(n, width, dtype=torch.long),
              "completion_mask": completion_mask, "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    return float(trainer._compute_loss(trainer.model, inputs, return_outputs=False))


@pytest.mark.parametrize("loss_type,eps", [c for c in CASES if c[0] != "sigmoid" or c[1] == 0.0])
@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_each_loss_matches_trl(loss_type, eps, beta):
    pc, pr, rc, rr = random_logps(seed=11, batch=32)
    ours = dpo_loss(pc, pr, rc, rr, beta, loss_type=loss_type, label_smoothing=eps)[0].item()
    assert ours == pytest.approx(trl_dpo_loss(loss_type, beta, pc, pr, rc, rr, eps), rel=1e-9)
    # the comparison can fail: a different beta gives a different number
    assert trl_dpo_loss(loss_type, 3 * beta, pc, pr, rc, rr, eps) != pytest.approx(ours, rel=1e-6)


@pytest.mark.parametrize("eps", [0.1, 0.3])
def test_cdpo_matches_trl(eps):
    """TRL 1.16's "sigmoid" ignores label_smoothing (TRL < 1.0 applied cDPO there); its cDPO formula now lives in
    "aot", which sorts the pair margins over the batch. Called on one pair at a time the sort is the identity, so
    "aot" is exactly cDPO's -(1-eps) log sigmoid(beta h) - eps log sigmoid(-beta h)."""
    beta = 0.5
    pc, pr, rc, rr = random_logps(seed=5, batch=8)
    theirs = [trl_dpo_loss("aot", beta, *(t[i:i + 1] for t in (pc, pr, rc, rr)), label_smoothing=eps) for i in range(8)]
    ours = dpo_loss(pc, pr, rc, rr, beta, label_smoothing=eps)[0].item()
    assert ours == pytest.approx(sum(theirs) / 8, rel=1e-9)
    # and TRL's "sigmoid" is plain DPO whatever label_smoothing says: our eps = 0, not our cDPO
    plain = dpo_loss(pc, pr, rc, rr, beta)[0].item()
    assert trl_dpo_loss("sigmoid", beta, pc, pr, rc, rr, label_smoothing=eps) == pytest.approx(plain, rel=1e-9)
    assert ours != pytest.approx(plain, rel=1e-3)


def test_ipo_length_normalisation_is_trls_only_difference():
    """TRL divides IPO's log-ratios by the completion lengths; ours reads sequence sums (see dpo_loss's docstring).
    Given per-token means, ours equals TRL's; given sums, it equals TRL only when every response is one token."""
    beta = 0.1
    pc, pr, rc, rr = random_logps(seed=3, batch=16)
    g = torch.Generator().manual_seed(3)
    lengths = torch.randint(2, 30, (32,), generator=g)                  # chosen rows, then rejected rows
    len_c, len_r = lengths[:16].double(), lengths[16:].double()
    theirs = trl_dpo_loss("ipo", beta, pc, pr, rc, rr, lengths=lengths)
    per_token = dpo_loss(pc / len_c, pr / len_r, rc / len_c, rr / len_r, beta, loss_type="ipo")[0].item()
    assert per_token == pytest.approx(theirs, rel=1e-9)
    sums = dpo_loss(pc, pr, rc, rr, beta, loss_type="ipo")[0].item()
    assert sums != pytest.approx(theirs, rel=1e-2)
    assert sums == pytest.approx(trl_dpo_loss("ipo", beta, pc, pr, rc, rr), rel=1e-9)


# ----------------------------------------------------------------------------- ties, label smoothing, robustness
def test_sigmoid_with_ties_is_bradley_terry_bit_for_bit():
    pc, pr, rc, rr = (t.float() for t in random_logps(seed=2, batch=12))
    targets = torch.tensor([1.0, 0.5] * 6)
    for t in (None, targets):
        a = [x.clone().requires_grad_() for x in (pc, pr)]
        b = [x.clone().requires_grad_() for x in (pc, pr)]
        ours = dpo_loss(a[0], a[1], rc, rr, 0.1, targets=t)[0]
        bt = bradley_terry_loss(0.1 * (b[0] - rc), 0.1 * (b[1] - rr), targets=t)   # dpo_loss before loss_type existed
        ours.backward(), bt.backward()
        assert torch.equal(ours, bt) and torch.equal(a[0].grad, b[0].grad) and torch.equal(a[1].grad, b[1].grad)


@pytest.mark.parametrize("loss_type,eps", CASES)
def test_targets_of_one_change_nothing(loss_type, eps):
    pc, pr, rc, rr = random_logps(seed=4)
    plain = dpo_loss(pc, pr, rc, rr, 0.3, loss_type=loss_type, label_smoothing=eps)[0]
    ones = dpo_loss(pc, pr, rc, rr, 0.3, torch.ones(16), loss_type=loss_type, label_smoothing=eps)[0]
    assert ones.item() == pytest.approx(plain.item(), rel=1e-12)


@pytest.mark.parametrize("eps", [0.0, 0.1, 0.3])
def test_ties_and_label_smoothing(eps):
    beta = 0.5
    pc, pr, rc, rr = random_logps(seed=6)
    targets = torch.tensor([1.0, 0.5, 0.0, 1.0] * 4)
    h = ((pc - rc) - (pr - rr)).tolist()
    # sigmoid: the cross-entropy with target eps + (1 - 2 eps) t; a tie (t = 0.5) stays 0.5 whatever eps is
    loss = dpo_loss(pc, pr, rc, rr, beta, targets, label_smoothing=eps)[0].item()
    expected = []
    for hi, t in zip(h, targets.tolist()):
        s = eps + (1 - 2 * eps) * t
        expected.append(-s * log_sigmoid(beta * hi) - (1 - s) * log_sigmoid(-beta * hi))
    assert loss == pytest.approx(sum(expected) / 16, rel=1e-10)
    ties = torch.full((16,), 0.5)
    tie_loss = dpo_loss(pc, pr, rc, rr, beta, ties, label_smoothing=eps)[0]
    assert tie_loss.item() == pytest.approx(dpo_loss(pc, pr, rc, rr, beta, ties)[0].item(), rel=1e-12)
    # robust: a tie costs what it costs under sigmoid, for every eps
    robust_tie = dpo_loss(pc, pr, rc, rr, beta, ties, loss_type="robust", label_smoothing=eps)[0]
    assert robust_tie.item() == pytest.approx(tie_loss.item(), rel=1e-10)


def test_ipo_tie_pulls_gap_to_zero():
    # t = 0.5: 0.5 (h - c)^2 + 0.5 (-h - c)^2 = h^2 + c^2 with c = 1 / (2 beta): smallest at h = 0
    beta, tie = 0.25, torch.tensor([0.5])
    zero, one = torch.zeros(1), torch.ones(1)
    at_zero = dpo_loss(zero, zero, zero, zero, beta, tie, loss_type="ipo")[0].item()
    at_one = dpo_loss(one, zero, zero, zero, beta, tie, loss_type="ipo")[0].item()
    assert at_zero == pytest.approx(4.0) and at_one == pytest.approx(5.0)


def test_robust_with_no_smoothing_is_dpo():
    pc, pr, rc, rr = random_logps(seed=8, batch=64)
    robust = dpo_loss(pc, pr, rc, rr, 0.2, loss_type="robust")[0]
    sigmoid = dpo_loss(pc, pr, rc, rr, 0.2)[0]
    torch.testing.assert_close(robust, sigmoid, rtol=1e-14, atol=0)


def _loss_and_grad(pc, pr, rc, rr, **kwargs):
    """dpo_loss and its gradient with respect to the policy log-probs (pc, pr), as two (B,) tensors."""
    pc, pr = pc.clone().requires_grad_(), pr.clone().requires_grad_()
    loss = dpo_loss(pc, pr, rc, rr, 0.5, **kwargs)[0]
    loss.backward()
    return loss.detach(), torch.stack([pc.grad, pr.grad])


@pytest.mark.parametrize("eps", [0.1, 0.25, 0.4])
def test_robust_dpo_is_unbiased_under_label_flips(eps):
    """Chowdhury et al. 2024: if each observed label is flipped with probability eps, the expected robust loss
    (and its gradient) is the clean DPO loss. Both expectations are exact: two terms, label kept or flipped."""
    pc, pr, rc, rr = random_logps(seed=9, batch=8)
    clean_loss, clean_grad = _loss_and_grad(pc, pr, rc, rr)                               # sigmoid, true labels
    kept_loss, kept_grad = _loss_and_grad(pc, pr, rc, rr, loss_type="robust", label_smoothing=eps)
    flip_loss, flip_grad = _loss_and_grad(pr, pc, rr, rc, loss_type="robust", label_smoothing=eps)  # swapped pair
    flip_grad = flip_grad.flip(0)                  # back to (d/d pc, d/d pr)
    torch.testing.assert_close((1 - eps) * kept_grad + eps * flip_grad, clean_grad, rtol=1e-10, atol=1e-14)
    torch.testing.assert_close((1 - eps) * kept_loss + eps * flip_loss, clean_loss, rtol=1e-10, atol=0)
    # cDPO (label smoothing in "sigmoid") is not: its expected gradient is a shrunk, biased one
    kept_c = _loss_and_grad(pc, pr, rc, rr, label_smoothing=eps)[1]
    flip_c = _loss_and_grad(pr, pc, rr, rc, label_smoothing=eps)[1].flip(0)
    assert not torch.allclose((1 - eps) * kept_c + eps * flip_c, clean_grad, rtol=1e-3)


def test_bad_loss_type_and_label_smoothing():
    x = torch.zeros(3)
    for bad in ("dpo", "IPO", "kto", ""):
        with pytest.raises(ValueError, match="unknown loss_type"):
            dpo_loss(x, x, x, x, 0.1, loss_type=bad)
    for loss_type in ("sigmoid", "robust"):
        for eps in (-0.1, 0.5, 0.7):
            with pytest.raises(ValueError, match=r"\[0, 0.5\)"):
                dpo_loss(x, x, x, x, 0.1, loss_type=loss_type, label_smoothing=eps)
    for loss_type in ("ipo", "hinge"):
        with pytest.raises(ValueError, match="applies to loss_type"):
            dpo_loss(x, x, x, x, 0.1, loss_type=loss_type, label_smoothing=0.1)
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(x, x, torch.zeros(2), x, 0.1, loss_type="ipo")
    assert set(LOSS_TYPES) == {"sigmoid", "robust", "ipo", "hinge"}


# ----------------------------------------------------------------------------- KTO
def kto_inputs(seed: int, batch: int = 24, kl_shift: float = 0.0):
    """policy/ref log-probs of the examples and of the mismatched pairs, and a random desirable mask."""
    pl, rl, pk, rk = random_logps(seed, batch)
    g = torch.Generator().manual_seed(seed)
    desirable = torch.rand(batch, generator=g) < 0.6
    return pl, rl, desirable, pk + kl_shift, rk


@pytest.mark.parametrize("beta,weights", [(0.1, (1.0, 1.0)), (0.5, (1.33, 1.0)), (1.0, (1.0, 2.5))])
def test_kto_loss_matches_eq8(beta, weights):
    pl, rl, desirable, pk, rk = kto_inputs(seed=int(beta * 10))
    z0 = max(0.0, sum(a - b for a, b in zip(pk.tolist(), rk.tolist())) / len(pk))
    loss, des_r, und_r = kto_loss(pl, rl, desirable, kl_estimate(pk, rk), beta, *weights)
    sig = lambda v: 1 / (1 + math.exp(-v))  # noqa: E731
    per_example = [weights[0] * (1 - sig(beta * ((a - b) - z0))) if d else weights[1] * (1 - sig(beta * (z0 - (a - b))))
                   for a, b, d in zip(pl.tolist(), rl.tolist(), desirable.tolist())]
    assert loss.item() == pytest.approx(sum(per_example) / len(per_example), rel=1e-10)
    torch.testing.assert_close(des_r, beta * (pl - rl)[desirable])
    torch.testing.assert_close(und_r, beta * (pl - rl)[~desirable])


def trl_kto_loss(beta, policy_logps, ref_logps, desirable, policy_kl_logps, ref_kl_logps,
                 desirable_weight=1.0, undesirable_weight=1.0):
    """TRL's own KTO loss, from ``trl/trainer/kto_trainer.py::KTOTrainer._compute_loss`` (TRL 1.16 has no separate
    ``kto_loss``: the loss is written inside ``_compute_loss``), called on a bare instance with precomputed
    reference log-probs. A stand-in model returns the example log-probs for the matched rows (input ids 0) and
    the mismatched KL log-probs for the KL rows (input ids 1), one scored token each."""
    trl = pytest.importorskip("trl", reason="TRL is the optional test extra: pip install trl")
    try:
        from trl import KTOTrainer
    except Exception as e:
        pytest.skip(f"TRL {trl.__version__} cannot import KTOTrainer here: {e}")
    if "_compute_loss" not in vars(KTOTrainer):
        pytest.skip(f"TRL {trl.__version__} has no KTOTrainer._compute_loss")

    trainer = object.__new__(KTOTrainer)
    identity = lambda x: x  # noqa: E731
    trainer.accelerator = SimpleNamespace(device=torch.device("cpu"), gather=identity, gather_for_metrics=identity)
    trainer.beta, trainer.loss_type = beta, "kto"
    trainer.desirable_weight, trainer.undesirable_weight = desirable_weight, undesirable_weight
    trainer.calculate_KL, trainer.precompute_ref_logps, trainer.aux_loss_enabled = True, True, False
    trainer._total_train_tokens, trainer._tp_size = 0, 1
    trainer._metrics = defaultdict(lambda: defaultdict(list))
    n = len(policy_logps)

    class StandInModel:
        training = True

        def __call__(self, input_ids, **kwargs):
            logps = policy_kl_logps if bool(input_ids[0, 0] == 1) else policy_logps
            column = logps.unsqueeze(1)           # (B, 1)
            return SimpleNamespace(log_probs=column, entropy=torch.zeros_like(column),
                                   mean_logits=torch.zeros_like(column))

    trainer.model = StandInModel()
    ones = torch.ones(n, 2, dtype=torch.long)
    inputs = {"input_ids": 0 * ones, "attention_mask": ones, "completion_mask": torch.tensor([[0, 1]] * n),
              "KL_input_ids": ones, "KL_attention_mask": ones, "KL_completion_mask": torch.tensor([[0, 1]] * n),
              "label": desirable, "ref_logps": ref_logps, "ref_KL_logps": ref_kl_logps}
    return float(trainer._compute_loss(trainer.model, inputs, return_outputs=False))


@pytest.mark.parametrize("kl_shift", [0.0, 3.0, -3.0])   # the KL estimate near 0, clearly positive, clamped to 0
@pytest.mark.parametrize("beta,weights", [(0.1, (1.0, 1.0)), (0.5, (1.33, 1.0)), (1.0, (1.0, 2.5))])
def test_kto_loss_matches_trl(beta, weights, kl_shift):
    pl, rl, desirable, pk, rk = kto_inputs(seed=13, kl_shift=kl_shift)
    ours = kto_loss(pl, rl, desirable, kl_estimate(pk, rk), beta, *weights)[0].item()
    assert ours == pytest.approx(trl_kto_loss(beta, pl, rl, desirable, pk, rk, *weights), rel=1e-9)
    assert trl_kto_loss(3 * beta, pl, rl, desirable, pk, rk, *weights) != pytest.approx(ours, rel=1e-6)
    if kl_shift < 0:
        assert kl_estimate(pk, rk).item() == 0.0
    if kl_shift > 0:
        assert kl_estimate(pk, rk).item() > 1.0


def test_kto_loss_one_kind_only_matches_trl():
    pl, rl, _, pk, rk = kto_inputs(seed=14, batch=6)
    for desirable in (torch.ones(6, dtype=torch.bool), torch.zeros(6, dtype=torch.bool)):
        ours = kto_loss(pl, rl, desirable, kl_estimate(pk, rk), 0.3)[0].item()
        assert ours == pytest.approx(trl_kto_loss(0.3, pl, rl, desirable, pk, rk), rel=1e-9)


def test_kto_gradient_and_reference_point():
    # the reference point takes no gradient; d loss / d log pi(y) = -beta s (1 - s) / B (desirable, s the sigmoid)
    beta = 0.5
    pl, rl, desirable, pk, rk = kto_inputs(seed=15, batch=8)
    pl, pk = pl.clone().requires_grad_(), pk.clone().requires_grad_()
    z0 = (pk - rk).mean().clamp(min=0)                     # not detached: kto_loss must detach it
    loss = kto_loss(pl, rl, desirable, z0, beta)[0]
    loss.backward()
    assert pk.grad is None
    s = torch.sigmoid(beta * ((pl - rl).detach() - z0.detach()))             # sigmoid(beta (r - z0))
    u = torch.sigmoid(beta * (z0.detach() - (pl - rl).detach()))             # sigmoid(beta (z0 - r))
    expected = torch.where(desirable, -beta * s * (1 - s), beta * u * (1 - u)) / 8
    torch.testing.assert_close(pl.grad, expected)
    est = kl_estimate(pk, rk)
    assert not est.requires_grad and est.item() == pytest.approx(max(0.0, (pk - rk).mean().item()))


def test_kto_errors_and_mismatched_pairs():
    x, d = torch.zeros(3), torch.tensor([True, False, True])
    with pytest.raises(ValueError, match="beta"):
        kto_loss(x, x, d, 0.0, beta=0.0)
    with pytest.raises(ValueError, match="shape"):
        kto_loss(x, torch.zeros(2), d, 0.0, beta=0.1)
    with pytest.raises(ValueError, match="bool"):
        kto_loss(x, x, d.float(), 0.0, beta=0.1)
    # TRL's pairing: (x_1, y_n), (x_2, y_1), ..., (x_n, y_{n-1}); every prompt gets another example's response
    assert mismatched_responses(["a", "b", "c", "d"]) == ["d", "a", "b", "c"]
    assert mismatched_responses(("a", "b")) == ["b", "a"]


def test_examples_from_scores():
    records = [ScoreRecord("q", f"reply {s}", s) for s in (1, 2, 3, 4, 5, 3, 5)]
    examples = examples_from_scores(records)
    assert [(e.response, e.desirable) for e in examples] == [
        ("reply 1", False), ("reply 2", False), ("reply 4", True), ("reply 5", True), ("reply 5", True)]
    strict = examples_from_scores(records, good=5, bad=1)
    assert [(e.response, e.desirable) for e in strict] == [("reply 1", False), ("reply 5", True), ("reply 5", True)]
    assert all(isinstance(e, KTOExample) and e.prompt == "q" for e in examples)
    for good, bad in ((3, 3), (2, 4), (6, 2), (4, 0)):
        with pytest.raises(ValueError, match="bad < good"):
            examples_from_scores(records, good=good, bad=bad)


# ----------------------------------------------------------------------------- short runs on the tiny policy
PAIRS = [  # (prompt, good reply, bad reply)
    ("How do I start a vegetable garden?", "For your garden, start small and build up slowly. Good luck!", "Whatever."),
    ("Is it hard to learn Python?", "Practice a little every day. Start by setting one small goal for this week.",
     "That is a stupid idea."),
    ("Should I run a marathon this year?", "Start small and build up slowly. Plan a rest day each week. Good luck!",
     "Sounds boring."),
    ("Give me one tip for baking bread.", "Try a small test run before you commit. Good luck with the bread!",
     "What a waste of time."),
]


def test_short_ipo_run_learns(tiny):
    policy, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    ref = frozen_copy(policy)
    records = [PreferenceRecord(p, good, bad) for p, good, bad in PAIRS]
    beta = 0.5                                    # IPO's target gap 1 / (2 beta) = 1 nat
    # IPO's squared loss on sequence sums overshoots its target at DPO's learning rates (1e-4 and up on these
    # pairs): a small lr and all four pairs in every step
    config = DPOConfig(beta=beta, loss_type="ipo", lr=3e-5, epochs=5, batch_size=4, warmup_fraction=0.0, seed=0)
    history = train_dpo(policy, ref, tokenizer, records, config, progress=False)
    assert len(history.loss) == 5
    assert history.loss[0] == pytest.approx(1 / (2 * beta) ** 2, abs=1e-4)  # policy == reference: h = 0
    assert history.loss[-1] < 0.25 * history.loss[0]
    gap = history.reward_margin[-1] / beta        # mean h of the last batch: near the target 1, unlike DPO's
    assert 0.5 < gap < 1.5
    with pytest.raises(ValueError, match="unknown loss_type"):
        train_dpo(policy, ref, tokenizer, records, DPOConfig(loss_type="slic"), progress=False)
    with pytest.raises(ValueError, match="applies to loss_type"):
        train_dpo(policy, ref, tokenizer, records, DPOConfig(loss_type="ipo", label_smoothing=0.1), progress=False)


def test_short_kto_run_learns(tiny):
    policy, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    ref = frozen_copy(policy)
    examples = [KTOExample(p, good, True) for p, good, _ in PAIRS] + [(p, bad, False) for p, _, bad in PAIRS]
    config = KTOConfig(beta=0.5, lr=1e-3, epochs=4, batch_size=4, warmup_fraction=0.0, seed=0)
    history = train_kto(policy, ref, tokenizer, examples, config, progress=False)
    assert len(history.loss) == 8 and len(history.kl_estimate) == 8 and history.seconds > 0
    assert history.loss[0] == pytest.approx(0.5, abs=1e-6)       # policy == reference: every r = z0 = 0
    assert history.kl_estimate[0] == pytest.approx(0.0, abs=1e-6)
    assert sum(history.loss[-2:]) / 2 < 0.5 * history.loss[0]
    assert max(history.kl_estimate) > 0.5                          # the reference point moved during the run
    assert sum(history.desirable_reward[-2:]) > 0 > sum(history.undesirable_reward[-2:])
    # the same seed gives the same run; the errors
    again = train_kto(copy.deepcopy(tiny[0]), ref, tokenizer, examples, config, progress=False)
    assert again.loss == history.loss
    with pytest.raises(ValueError, match="at least two"):
        train_kto(policy, ref, tokenizer, examples[:1], config, progress=False)
    with pytest.raises(ValueError, match="batch_size"):
        train_kto(policy, ref, tokenizer, examples, KTOConfig(batch_size=1), progress=False)
    with pytest.raises(ValueError, match="same object"):
        train_kto(policy, policy, tokenizer, examples, config, progress=False)
    broken = copy.deepcopy(tiny[0])
    with torch.no_grad():
        broken.transformer.wte.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="step 1"):
        train_kto(broken, ref, tokenizer, examples, config, progress=False)

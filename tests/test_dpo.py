"""DPO: the loss against the paper's formula, a hand-computed case and TRL's implementation; a short run learns."""
from __future__ import annotations

import copy
import math
from collections import defaultdict
from types import SimpleNamespace

import pytest
import torch

from rlhf_lab.dpo import DPOConfig, PairData, dpo_loss, implicit_accuracy, implicit_reward, train_dpo
from rlhf_lab.models import frozen_copy
from rlhf_lab.preferences import PreferenceRecord


def random_logps(seed: int, batch: int = 16) -> list[torch.Tensor]:
    """Four (batch,) tensors of sequence log-probs: policy chosen/rejected, ref chosen/rejected."""
    g = torch.Generator().manual_seed(seed)
    return [-torch.rand(batch, generator=g, dtype=torch.float64) * 40 for _ in range(4)]


# ----------------------------------------------------------------------------- the loss
@pytest.mark.parametrize("beta", [0.05, 0.1, 0.5, 2.0])
def test_dpo_loss_matches_eq7(beta):
    pc, pr, rc, rr = random_logps(seed=int(beta * 100))
    loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta)
    # Eq. 7, written out element by element: -log sigma(beta log pi(yw)/ref(yw) - beta log pi(yl)/ref(yl))
    expected = [-math.log(1 / (1 + math.exp(-(beta * (a - c) - beta * (b - d)))))
                for a, b, c, d in zip(pc.tolist(), pr.tolist(), rc.tolist(), rr.tolist())]
    assert loss.item() == pytest.approx(sum(expected) / len(expected), rel=1e-10)
    assert torch.allclose(chosen_rewards, beta * (pc - rc))
    assert torch.allclose(rejected_rewards, beta * (pr - rr))


def test_dpo_loss_hand_computed():
    # One pair. Policy log-probs -2 (chosen), -5 (rejected); reference -3 and -4; beta 0.5.
    # Implicit rewards: 0.5 * (-2 + 3) = 0.5 and 0.5 * (-5 + 4) = -0.5; margin 1; loss = -log sigmoid(1) = log(1 + e^-1).
    loss, chosen, rejected = dpo_loss(torch.tensor([-2.0]), torch.tensor([-5.0]),
                                      torch.tensor([-3.0]), torch.tensor([-4.0]), beta=0.5)
    assert loss.item() == pytest.approx(0.3132616875182228, abs=1e-6)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)), abs=1e-6)
    assert chosen.item() == pytest.approx(0.5) and rejected.item() == pytest.approx(-0.5)
    # at the start of training the policy IS the reference: every pair costs log 2
    same = torch.tensor([-7.0, -1.0])
    assert dpo_loss(same, same - 3, same, same - 3, beta=0.1)[0].item() == pytest.approx(math.log(2))


def test_dpo_loss_gradient_and_detached_rewards():
    pc, pr, rc, rr = (t.float() for t in random_logps(seed=1, batch=4))
    pc, pr = pc.requires_grad_(), pr.requires_grad_()
    loss, chosen_rewards, rejected_rewards = dpo_loss(pc, pr, rc, rr, beta=0.1)
    loss.backward()
    assert not chosen_rewards.requires_grad and not rejected_rewards.requires_grad
    # d loss / d log pi(y_w) = -beta * sigmoid(-margin) / B < 0 (push chosen up); rejected: the opposite
    margin = 0.1 * ((pc - rc) - (pr - rr)).detach()
    assert torch.allclose(pc.grad, -0.1 * torch.sigmoid(-margin) / 4, atol=1e-7)
    assert torch.allclose(pr.grad, -pc.grad)


def test_dpo_loss_rejects_bad_input():
    x = torch.zeros(3)
    with pytest.raises(ValueError, match="beta"):
        dpo_loss(x, x, x, x, beta=0.0)
    with pytest.raises(ValueError, match="shape"):
        dpo_loss(torch.zeros(3), torch.zeros(2), torch.zeros(3), torch.zeros(2), beta=0.1)


def test_dpo_loss_ties_pull_margin_to_zero():
    # target 0.5 (a tie): the loss is smallest when the two implicit rewards are equal
    zero, one = torch.zeros(1), torch.ones(1)
    tie = torch.tensor([0.5])
    at_equal = dpo_loss(zero, zero, zero, zero, 1.0, targets=tie)[0]
    apart = dpo_loss(one, zero, zero, zero, 1.0, targets=tie)[0]
    assert at_equal.item() == pytest.approx(math.log(2)) and apart > at_equal


# ----------------------------------------------------------------------------- against TRL
def trl_sigmoid_dpo_loss(beta, pc, pr, rc, rr):
    """TRL's own DPO ("sigmoid") loss on given sequence log-probs, without building a trainer.

    Older TRL has ``DPOTrainer.dpo_loss(chosen_logps, rejected_logps, ref_chosen_logps, ref_rejected_logps)``;
    TRL >= 1.0 computes the loss inside ``DPOTrainer._compute_loss(model, inputs, ...)``. Either is called on a
    bare instance (``object.__new__``) carrying only the attributes the method reads; for ``_compute_loss`` a
    stand-in model returns the log-probs as one "token" per response, so its sum over tokens is the given value.
    """
    trl = pytest.importorskip("trl", reason="TRL is the optional test extra: pip install trl")
    try:
        from trl import DPOTrainer
    except Exception as e:  # TRL imports lazily: a TRL too old for the installed transformers fails only here
        pytest.skip(f"TRL {trl.__version__} cannot import DPOTrainer here: {e}")

    trainer = object.__new__(DPOTrainer)
    identity = lambda x: x  # noqa: E731  (one process: gathering is the identity)
    trainer.accelerator = SimpleNamespace(device=torch.device("cpu"), gather=identity, gather_for_metrics=identity)
    trainer.beta, trainer.label_smoothing, trainer.reference_free = beta, 0.0, False
    trainer.loss_type, trainer.loss_types, trainer.loss_weights = "sigmoid", ["sigmoid"], [1.0]
    trainer.f_divergence_type, trainer.f_divergence_params = "reverse_kl", {}
    trainer.use_weighting, trainer.aux_loss_enabled, trainer.ld_alpha = False, False, None
    trainer.precompute_ref_logps, trainer._total_train_tokens, trainer._tp_size = True, 0, 1
    trainer._metrics = defaultdict(lambda: defaultdict(list))

    if "dpo_loss" in vars(DPOTrainer):           # TRL < 1.0
        losses = trainer.dpo_loss(pc, pr, rc, rr)[0]
        return losses.mean()
    if "_compute_loss" not in vars(DPOTrainer):
        pytest.skip(f"TRL {trl.__version__}: found neither DPOTrainer.dpo_loss nor DPOTrainer._compute_loss")

    logps = torch.cat([pc, pr])                   # TRL's batch: chosen rows, then rejected rows
    n = len(logps)

    class StandInModel:
        training = True

        def __call__(self, **kwargs):
            column = logps.unsqueeze(1)           # (2B, 1): one scored "token" per response
            return SimpleNamespace(log_probs=column, entropy=torch.zeros_like(column),
                                   mean_logits=torch.zeros_like(column), is_top1=torch.zeros_like(column, dtype=bool))

    trainer.model = StandInModel()
    inputs = {"input_ids": torch.zeros(n, 2, dtype=torch.long), "attention_mask": torch.ones(n, 2, dtype=torch.long),
              "completion_mask": torch.tensor([[0, 1]] * n), "ref_chosen_logps": rc, "ref_rejected_logps": rr}
    return trainer._compute_loss(trainer.model, inputs, return_outputs=False)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_dpo_loss_matches_trl(beta):
    pc, pr, rc, rr = random_logps(seed=7, batch=32)
    ours = dpo_loss(pc, pr, rc, rr, beta)[0]
    theirs = trl_sigmoid_dpo_loss(beta, pc, pr, rc, rr)
    assert ours.item() == pytest.approx(float(theirs), rel=1e-9)
    # and the two differ when beta does (the comparison could fail)
    assert float(trl_sigmoid_dpo_loss(2 * beta, pc, pr, rc, rr)) != pytest.approx(ours.item(), rel=1e-6)


# ----------------------------------------------------------------------------- training on the tiny policy
PAIRS = [  # (prompt, chosen, rejected): gold prefers the helpful, polite, on-topic reply
    ("How do I start a vegetable garden?", "For your garden, start small and build up slowly. Good luck!",
     "Whatever."),
    ("Is it hard to learn Python?", "Practice a little every day. Start by setting one small goal for this week.",
     "That is a stupid idea."),
    ("Can you help me plan a small wedding?", "First, write down what you need. Make a list and check it every morning.",
     "I do not care."),
    ("Should I run a marathon this year?", "Start small and build up slowly. Plan a rest day each week. Good luck!",
     "Sounds boring."),
    ("Please give me some advice on my resume.", "You could ask a friend to join you. Hope this helps.",
     "No idea, figure it out yourself."),
    ("What should I know about adopting a dog?", "Take it one step at a time. Keep a short note of your progress.",
     "Hmm."),
    ("Give me one tip for baking bread.", "Try a small test run before you commit. Good luck with the bread!",
     "What a waste of time."),
    ("Help me make a plan to learn Spanish.", "Try to spend twenty minutes on it every day. Thanks for asking!",
     "Maybe."),
]


def test_pair_data_scores_each_response_once(tiny):
    tokenizer = tiny[1]
    a, b, c = "Try it. Good luck!", "Whatever.", "Hmm."
    records = [PreferenceRecord("Is it hard to learn Python?", x, y) for x, y in [(a, b), (a, c), (c, b)]]
    records.append(PreferenceRecord("Should I adopt a dog?", a, b, tie=True))
    data = PairData.from_records(tokenizer, records)
    assert len(data.rows) == 5                      # 3 responses to the first prompt, 2 to the second
    assert data.chosen.tolist() == [0, 0, 1, 2] and data.rejected.tolist() == [3, 1, 3, 4]
    assert data.groups == [[0, 1, 2], [3]] and data.targets.tolist() == [1.0, 1.0, 1.0, 0.5]


def test_short_dpo_run_learns(tiny):
    policy, tokenizer = copy.deepcopy(tiny[0]), tiny[1]
    ref = frozen_copy(policy)
    records = [PreferenceRecord(p, c, r) for p, c, r in PAIRS]
    before = implicit_accuracy(policy, ref, tokenizer, records)
    assert before == pytest.approx(0.5)  # policy == reference: every implicit reward is 0, each pair counts half
    config = DPOConfig(beta=0.1, lr=2e-3, epochs=3, batch_size=4, warmup_fraction=0.0, seed=0)
    history = train_dpo(policy, ref, tokenizer, records, config, val_records=records, progress=False)
    assert len(history.loss) == 6 and history.epoch_end_steps == [2, 4, 6]
    assert history.loss[0] == pytest.approx(math.log(2), abs=1e-4)   # the first batch is scored before any update
    assert sum(history.loss[-2:]) / 2 < 0.5 * math.log(2)
    assert history.reward_margin[-1] > history.reward_margin[0] + 0.5
    assert history.kl_proxy[0] == pytest.approx(0.0, abs=1e-8) and history.kl_proxy[-1] > 0
    after = implicit_accuracy(policy, ref, tokenizer, records)
    assert after == 1.0 and history.val_accuracy[-1] == 1.0
    # implicit_reward is beta * (log pi - log pi_ref): chosen now scores above rejected, by the same margin
    prompts = [p for p, _, _ in PAIRS]
    r_chosen = implicit_reward(policy, ref, tokenizer, prompts, [c for _, c, _ in PAIRS], beta=0.1)
    r_rejected = implicit_reward(policy, ref, tokenizer, prompts, [r for _, _, r in PAIRS], beta=0.1)
    assert r_chosen.shape == (len(PAIRS),) and (r_chosen > r_rejected).all()


def test_train_dpo_is_deterministic_and_stops_on_nan(tiny):
    tokenizer = tiny[1]
    records = [PreferenceRecord(p, c, r) for p, c, r in PAIRS[:4]]
    config = DPOConfig(beta=0.1, lr=1e-3, epochs=1, batch_size=2, seed=3)
    runs = []
    for _ in range(2):
        policy = copy.deepcopy(tiny[0])
        runs.append(train_dpo(policy, frozen_copy(policy), tokenizer, records, config, progress=False).loss)
    assert len(runs[0]) == 2 and runs[0] == runs[1]
    policy = copy.deepcopy(tiny[0])
    ref = frozen_copy(policy)
    with torch.no_grad():
        policy.transformer.wte.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="step 1"):
        train_dpo(policy, ref, tokenizer, records, config, progress=False)
    with pytest.raises(ValueError, match="no trainable parameters"):
        train_dpo(ref, frozen_copy(ref), tokenizer, records, config, progress=False)
    with pytest.raises(ValueError, match="at least one"):
        train_dpo(policy, ref, tokenizer, [], config, progress=False)

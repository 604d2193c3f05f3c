"""The Bradley-Terry loss: how a reward model learns from clicks between two responses.

A reward model r(x, y) gives a number to a response y to a prompt x. People do not write those numbers down;
they click the better of two responses. The Bradley-Terry model (Bradley & Terry 1952) links the two: the
chance that y_c is preferred over y_r is ``sigmoid(r(x, y_c) - r(x, y_r))``. Maximising the likelihood of the
recorded clicks gives the reward-model loss of InstructGPT (Ouyang et al. 2022, Eq. 1),
:func:`bradley_terry_loss`. Only reward *differences* enter it, so a reward model's zero is arbitrary and its
scale is set by how noisy the clicks were.

Every reward model of the course trains with it (``linear_reward``, ``reward_model``), and so does DPO, on
its implicit rewards (``dpo.dpo_loss``). Shapes: B = pairs, each reward is one number per response, (B,).
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from rlhf_lab.preferences import PreferenceRecord


def bradley_terry_loss(chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
                       margin: torch.Tensor | float | None = None,
                       targets: torch.Tensor | None = None) -> torch.Tensor:
    """Bradley-Terry negative log-likelihood of the clicks: ``mean(-log sigmoid(r_c - r_r))``.

    Bradley & Terry (1952); the reward-model loss of InstructGPT (Ouyang et al. 2022, Eq. 1).

    chosen_rewards:   (B,) r(x, y_chosen) for each pair.
    rejected_rewards: (B,) r(x, y_rejected) for each pair.
    margin:           optional (B,) or scalar m subtracted inside the sigmoid, ``-log sigmoid(r_c - r_r - m)``:
                      asks for a larger gap on pairs the raters found clearly different (Llama 2,
                      Touvron et al. 2023, Eq. 2). None means 0.
    targets:          optional (B,) probability that chosen really is preferred: 1 for an ordinary click,
                      0.5 for a tie (``PreferenceRecord.tie``). The loss is then the cross-entropy
                      ``-[t log sigmoid(d) + (1 - t) log sigmoid(-d)]`` with d = r_c - r_r (- m), which is
                      the formula above when t = 1 and pulls d towards 0 when t = 0.5. None means all 1.
    Returns a scalar tensor (the mean over the B pairs). ``F.logsigmoid`` keeps it finite for large |d|.
    """
    if chosen_rewards.shape != rejected_rewards.shape or chosen_rewards.dim() != 1:
        raise ValueError(f"chosen_rewards and rejected_rewards must both have shape (B,), got "
                         f"{tuple(chosen_rewards.shape)} and {tuple(rejected_rewards.shape)}")
    diff = chosen_rewards - rejected_rewards
    if margin is not None:
        diff = diff - margin
    if targets is None:
        return -F.logsigmoid(diff).mean()
    targets = targets.to(diff.dtype)
    return -(targets * F.logsigmoid(diff) + (1 - targets) * F.logsigmoid(-diff)).mean()


def tie_targets(records: Sequence[PreferenceRecord]) -> torch.Tensor:
    """(B,) targets for :func:`bradley_terry_loss`: 0.5 for a tie, 1 for an ordinary click."""
    return torch.tensor([0.5 if r.tie else 1.0 for r in records])

"""A linear reward model: one readable weight per hand-made feature, trained with the Bradley-Terry loss.

r(x, y) = w . features(x, y). The features (:data:`FEATURES`) are the counts a careful reader notices
(``world.read_reply``: answers, advice, hedges, topic, politeness, defects) and three length buckets, so each
learned weight can be read next to the gold reward's parts (:func:`gold_feature_weights`, the best linear
approximation of gold in the same features). :func:`train_linear_reward_model` fits it to preference records
with ``bradley_terry.bradley_terry_loss`` in about a second, deterministically. Notebook 03 starts here before
the transformer reward model (``reward_model``), which learns its own features from many more clicks.

Shapes: B = (prompt, response) pairs; features are (B, len(FEATURES)) float32, rewards (B,).
"""
from __future__ import annotations

import contextlib
import random
from typing import Mapping, Sequence

import torch

from rlhf_lab import world
from rlhf_lab.bradley_terry import bradley_terry_loss, tie_targets
from rlhf_lab.preferences import PreferenceRecord

#: The hand-made features of :func:`featurize`, in order: the counts a careful reader notices
#: (``world.read_reply``), uncapped, and length as three buckets (8-30 words: all 0).
FEATURES = ("answers the question", "answers another question", "advice sentences", "hedges",
            "names the topic", "names another topic", "polite phrases", "rude phrases", "garbled sentences",
            "unfinished", "out of place", "repeated sentences", "0-2 words", "3-7 words", "over 30 words")


def featurize(prompt: world.Prompt | str, response: str) -> list[float]:
    """The :data:`FEATURES` of one (prompt, response), read with the world's own ``read_reply``.

    Counts are NOT capped (the gold reward caps most of them) and length is three buckets (gold is a
    per-word penalty), so the linear model can approximate gold well but not exactly.
    """
    r = world.read_reply(prompt, response)
    n = r.n_words
    return [float(r.fitting_answers > 0), float(r.fitting_answers == 0 and r.other_answers > 0), float(r.advice),
            float(r.vague), float(r.names_topic), float(r.off_topic), float(r.polite), float(r.rude),
            float(r.malformed), float(r.unfinished), float(r.misplaced), float(r.repeated),
            float(n <= 2), float(3 <= n <= 7), float(n > 30)]


def feature_matrix(prompts: Sequence[world.Prompt | str], responses: Sequence[str]) -> torch.Tensor:
    """:func:`featurize` for each (prompt, response). Shape: (B, len(FEATURES)) float32."""
    if len(prompts) != len(responses):
        raise ValueError(f"got {len(prompts)} prompts but {len(responses)} responses")
    return torch.tensor([featurize(p, r) for p, r in zip(prompts, responses)],
                        dtype=torch.float32).reshape(len(prompts), len(FEATURES))


class LinearRewardModel(torch.nn.Module):
    """r(x, y) = w . features(x, y): one readable weight per feature, no bias (BT ignores a constant)."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(len(FEATURES)))

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """(B, len(FEATURES)) features -> (B,) rewards."""
        return features @ self.weight

    @torch.no_grad()
    def score(self, prompts: Sequence[world.Prompt | str], responses: Sequence[str]) -> torch.Tensor:
        """Rewards of (prompt, response) pairs given as texts. Shape: (B,)."""
        return self(feature_matrix(prompts, responses))

    def weights(self) -> dict[str, float]:
        """The learned weight of each feature, by name."""
        return dict(zip(FEATURES, self.weight.detach().tolist()))


def train_linear_reward_model(records: Sequence[PreferenceRecord], steps: int = 300, lr: float = 0.1,
                              weight_decay: float = 0.0, rater_slopes: Mapping[str, float] | None = None
                              ) -> tuple[LinearRewardModel, list[float]]:
    """Fit a :class:`LinearRewardModel` to preference records with :func:`bradley_terry_loss`.

    Full-batch Adam from all-zero weights, so the result is deterministic (no seed needed); a few hundred
    steps converge for thousands of pairs in about a second. ``weight_decay`` is an L2 penalty
    ``weight_decay * |w|^2`` added to the loss. Ties train towards equal rewards (target 0.5).
    ``rater_slopes`` (``{rater: 1 / T}``, e.g. from ``agreement.fit_rater_temperature``) gives each rater's
    clicks their own Bradley-Terry temperature, ``-log sigmoid((r_c - r_r) / T_rater)``: a careful rater's
    clicks count more, a coin-flipper's hardly at all, a contrarian's (negative slope) the other way round;
    a rater missing from the mapping gets slope 1.
    Returns the model and the loss after each step.
    """
    if not records:
        raise ValueError("train_linear_reward_model needs at least one preference record")
    chosen = feature_matrix([r.prompt for r in records], [r.chosen for r in records])
    rejected = feature_matrix([r.prompt for r in records], [r.rejected for r in records])
    targets = tie_targets(records)
    if rater_slopes is not None:
        slopes = torch.tensor([float(rater_slopes.get(r.rater, 1.0)) for r in records])[:, None]   # (B, 1)
        if not torch.isfinite(slopes).all():
            raise ValueError("rater_slopes must be finite (a rater whose clicks all agree with gold fits slope "
                             "inf: cap it, e.g. min(slope, 10))")
        chosen, rejected = chosen * slopes, rejected * slopes      # r is linear: (w . f) / T = w . (f / T)
    model = LinearRewardModel()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    with _one_thread():   # tensors this small only lose time to thread synchronisation
        for _ in range(steps):
            loss = bradley_terry_loss(model(chosen), model(rejected), targets=targets)
            losses.append(loss.item())
            loss = loss + weight_decay * model.weight.pow(2).sum()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    return model, losses


@contextlib.contextmanager
def _one_thread():
    """Run torch on one thread inside the block (restored afterwards)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def gold_feature_weights(prompts: Sequence[world.Prompt], n: int = 4000, seed: int = 0) -> dict[str, float]:
    """The best linear approximation of ``world.gold_reward`` in :data:`FEATURES`, for comparison.

    Least squares of gold on the features (plus an intercept, dropped) over ``n`` candidate responses to
    random ``prompts``. A BT model trained on clicks of a rater with temperature T should learn about
    these weights divided by T (the rater's P = sigmoid(gold difference / T)).
    """
    rng = random.Random(seed)
    pairs = [(p, world.candidate_responses(p, 1, rng)[0]) for p in rng.choices(list(prompts), k=n)]
    x = feature_matrix([p for p, _ in pairs], [r for _, r in pairs]).double()
    x = torch.cat([x, torch.ones(n, 1, dtype=x.dtype)], dim=1)
    y = torch.tensor([world.gold_reward(p, r) for p, r in pairs], dtype=x.dtype)
    w = torch.linalg.lstsq(x, y.unsqueeze(1)).solution.squeeze(1)[:-1]
    return dict(zip(FEATURES, w.tolist()))


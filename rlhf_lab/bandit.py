"""The canned-reply world of notebook 01 and a softmax policy that learns in it.

The world is the seed lesson's: a "model" that answers any prompt with one of three
canned replies, and a "reward model" that is a dictionary of scores. The policy is the
smallest thing that can learn from those scores: one logit per reply, a softmax over
them, and the REINFORCE update (Williams 1992) that notebook 01 derives:

    grad_theta E_{a ~ pi}[r(a)] = E_{a ~ pi}[(r(a) - b) * grad_theta log pi(a)]

where for a softmax policy ``grad_theta log pi(a) = onehot(a) - pi`` and ``b`` is any
baseline that does not depend on ``a`` (it changes the variance, not the mean).
"""
from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np

#: The three canned replies of the seed lesson, in a fixed order (index = action).
REPLIES: tuple[str, ...] = ("Great idea!", "Not sure about that.", "Interesting thought.")
#: The seed lesson's reward dictionary.
REWARDS: dict[str, float] = {"Great idea!": 10, "Not sure about that.": 5, "Interesting thought.": 7}


def generate_response(prompt: str, rng: random.Random | None = None) -> str:
    """The seed lesson's "model": ignore the prompt and pick a canned reply uniformly."""
    return (rng or random).choice(REPLIES)


def reward_model(response: str, rewards: dict[str, float] = REWARDS) -> float:
    """The seed lesson's "reward model": look the reply up; unknown replies score 0."""
    return rewards.get(response, 0)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Numerically stable softmax over the last axis."""
    z = np.asarray(logits, dtype=float)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def entropy(probs: np.ndarray) -> float:
    """Shannon entropy in nats: log(3) = 1.10 for a uniform policy over three replies, 0 when collapsed."""
    p = np.asarray(probs, dtype=float)
    p = p[p > 0]
    return float(-(p * np.log(p)).sum())


def expected_reward(probs: np.ndarray, rewards: dict[str, float] = REWARDS,
                    replies: tuple[str, ...] = REPLIES) -> float:
    """E_{a ~ pi}[r(a)] = sum_a pi(a) r(a). For the uniform policy and the seed rewards: 22/3."""
    r = np.array([rewards[x] for x in replies], dtype=float)
    return float(np.dot(probs, r))


def grad_log_prob(logits: np.ndarray, action: int) -> np.ndarray:
    """grad_theta log softmax(theta)[action] = onehot(action) - softmax(theta).  Shape: (n_replies,)."""
    g = -softmax(logits)
    g[action] += 1.0
    return g


@dataclass
class ReinforceConfig:
    """Settings of one REINFORCE run on the canned-reply bandit."""
    steps: int = 150          # policy updates
    batch_size: int = 8       # replies sampled per update (the gradient is their average)
    lr: float = 0.05          # learning rate of plain gradient ascent on the logits
    baseline: bool = False    # subtract a running mean of the reward (lower variance, same mean)
    baseline_decay: float = 0.9  # weight of the old value in the running-mean baseline
    beta: float = 0.0         # KL weight: each reply's reward becomes r(a) - beta * log(pi(a) / pi_ref(a))
    seed: int = 0             # seed of the sampler: the same seed gives the same run


@dataclass
class History:
    """What a run logs, one row per step (step 0 is the policy before any update)."""
    probs: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))   # (steps+1, n_replies)
    expected_reward: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (steps+1,)
    entropy: np.ndarray = field(default_factory=lambda: np.zeros(0))      # (steps+1,)
    sample_reward: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (steps,) batch mean


def reinforce(config: ReinforceConfig = ReinforceConfig(), rewards: dict[str, float] = REWARDS,
              replies: tuple[str, ...] = REPLIES, logits: np.ndarray | None = None,
              ref_probs: np.ndarray | None = None) -> History:
    """Train a softmax policy over ``replies`` with REINFORCE; start uniform unless ``logits`` given.

    Each step samples ``batch_size`` replies, scores them with ``rewards`` and moves the
    logits by ``lr * mean[(r - b) * (onehot(a) - pi)]``. With ``config.beta > 0`` the score of a reply is
    KL-shaped, ``r(a) - beta * log(pi(a) / pi_ref(a))`` (``ref_probs``, uniform by default): REINFORCE then
    follows the gradient of E[r] - beta * KL(pi || pi_ref) and converges to :func:`kl_regularized_optimum`.
    """
    if config.steps < 0 or config.batch_size < 1 or config.lr <= 0:
        raise ValueError(f"need steps >= 0, batch_size >= 1 and lr > 0, got {config}")
    missing = [x for x in replies if x not in rewards]
    if missing:
        raise KeyError(f"no reward for replies {missing}; rewards has {sorted(rewards)}")
    rng = np.random.default_rng(config.seed)
    theta = np.zeros(len(replies)) if logits is None else np.array(logits, dtype=float)
    r_table = np.array([rewards[x] for x in replies], dtype=float)
    log_ref = np.log(np.full(len(replies), 1 / len(replies)) if ref_probs is None else np.asarray(ref_probs, dtype=float))
    eye = np.eye(len(replies))
    baseline = 0.0
    probs, exp_r, ent, sample_r = [], [], [], []
    for step in range(config.steps + 1):
        pi = softmax(theta)
        probs.append(pi)
        exp_r.append(float(pi @ r_table))
        ent.append(entropy(pi))
        if step == config.steps:
            break
        actions = _sample(rng, pi, config.batch_size)
        r = r_table[actions] - config.beta * (np.log(pi[actions]) - log_ref[actions])   # KL-shaped if beta > 0
        if config.baseline:
            # a running mean of the rewards seen so far (on the very first step there is no
            # past yet, so it starts from that batch's mean)
            baseline = r.mean() if step == 0 else baseline
        advantage = r - (baseline if config.baseline else 0.0)
        grad = (advantage[:, None] * (eye[actions] - pi)).mean(axis=0)
        theta = theta + config.lr * grad
        sample_r.append(float(r.mean()))
        if config.baseline:
            baseline = config.baseline_decay * baseline + (1 - config.baseline_decay) * r.mean()
    return History(np.array(probs), np.array(exp_r), np.array(ent), np.array(sample_r))


def _sample(rng: np.random.Generator, probs: np.ndarray, n: int) -> np.ndarray:
    """n draws from a categorical distribution (inverse CDF; faster than ``rng.choice(p=...)``)."""
    cdf = np.cumsum(probs)
    return np.minimum(np.searchsorted(cdf, rng.random(n) * cdf[-1], side="right"), len(probs) - 1)


def gradient_variance(logits: np.ndarray, baseline: float | None, n_samples: int = 20_000,
                      rewards: dict[str, float] = REWARDS, replies: tuple[str, ...] = REPLIES,
                      seed: int = 0) -> tuple[np.ndarray, float]:
    """Mean and total variance of the one-sample REINFORCE gradient at ``logits``.

    Draws ``n_samples`` replies, forms ``(r(a) - b) * grad log pi(a)`` for each and returns
    ``(mean, variance)``: mean has shape (n_replies,) and estimates the true gradient;
    variance is the trace of the covariance (the sum of per-logit variances), the number a
    baseline lowers. ``baseline=None`` means no baseline (b = 0).
    """
    rng = np.random.default_rng(seed)
    pi = softmax(logits)
    r_table = np.array([rewards[x] for x in replies], dtype=float)
    actions = _sample(rng, pi, n_samples)
    b = 0.0 if baseline is None else baseline
    g = (r_table[actions] - b)[:, None] * (np.eye(len(replies))[actions] - pi)
    return g.mean(axis=0), float(g.var(axis=0).sum())


def exact_gradient(logits: np.ndarray, rewards: dict[str, float] = REWARDS,
                   replies: tuple[str, ...] = REPLIES) -> np.ndarray:
    """The true policy gradient sum_a pi(a) r(a) (onehot(a) - pi), computed exactly.  Shape: (n_replies,)."""
    pi = softmax(logits)
    r_table = np.array([rewards[x] for x in replies], dtype=float)
    return pi * (r_table - pi @ r_table)


def kl_regularized_optimum(beta: float, rewards: dict[str, float] = REWARDS, replies: tuple[str, ...] = REPLIES,
                           ref_probs: np.ndarray | None = None) -> np.ndarray:
    """The policy that maximises E_pi[r] - beta * KL(pi || pi_ref): pi*(a) = pi_ref(a) exp(r(a)/beta) / Z.

    The closed form behind RLHF's KL-regularised objective (Eq. 4 of Rafailov et al. 2023,
    https://arxiv.org/abs/2305.18290). ``ref_probs`` defaults to uniform.  Shape: (n_replies,).
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0 (beta -> 0 is the collapsed policy), got {beta}")
    r = np.array([rewards[x] for x in replies], dtype=float)
    ref = np.full(len(replies), 1 / len(replies)) if ref_probs is None else np.asarray(ref_probs, dtype=float)
    return softmax(np.log(ref) + r / beta)

"""The course's plots: one function per figure, the same labels everywhere."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np


def plot_bandit_history(history, replies: Sequence[str], rewards: Mapping[str, float] | None = None,
                        title: str = "REINFORCE on the canned-reply bandit"):
    """Two panels: expected reward per step, and each reply's probability per step.

    ``history`` is a ``rlhf_lab.bandit.History`` (or anything with ``expected_reward`` (steps+1,)
    and ``probs`` (steps+1, n_replies)). Returns the figure.
    """
    fig, (ax_r, ax_p) = plt.subplots(1, 2, figsize=(11, 3.6))
    steps = np.arange(len(history.expected_reward))
    ax_r.plot(steps, history.expected_reward, color="black")
    if rewards is not None:
        ax_r.axhline(max(rewards[x] for x in replies), ls="--", color="gray", lw=1, label="best possible")
        ax_r.legend(loc="lower right")
    ax_r.set(xlabel="step", ylabel="expected reward", title="expected reward")
    for i, reply in enumerate(replies):
        label = f"{reply} ({rewards[reply]:g})" if rewards is not None else reply
        ax_p.plot(steps, history.probs[:, i], label=label)
    ax_p.set(xlabel="step", ylabel="probability", ylim=(0, 1), title="probability of each reply")
    ax_p.legend(loc="center right", fontsize=8)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_curves(curves: Mapping[str, Sequence[float]], xlabel: str = "step", ylabel: str = "",
                title: str = "", ax=None, hline: float | None = None, hline_label: str = ""):
    """Several named curves on one axis (e.g. expected reward for several learning rates). Returns the axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.6))
    for name, ys in curves.items():
        ax.plot(np.arange(len(ys)), ys, label=name)
    if hline is not None:
        ax.axhline(hline, ls="--", color="gray", lw=1, label=hline_label or None)
    ax.set(xlabel=xlabel, ylabel=ylabel, title=title)
    ax.legend(fontsize=8)
    return ax

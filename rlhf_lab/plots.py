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


def plot_pg_history(histories: Mapping[str, Sequence[Mapping[str, float]]],
                    panels: Sequence[tuple[str, str]] = (("proxy_reward", "proxy reward (reward model)"),
                                                         ("gold_reward", "gold reward (what people prefer)"),
                                                         ("kl", "KL to reference (nats / response)")),
                    title: str = "", log_kl: bool = False):
    """One panel per logged quantity, one line per run: ``histories`` maps a run's name to its
    ``policy_gradient.train`` log (a list of per-step dicts). ``log_kl`` puts the KL panel on a
    symmetric-log scale (runs that differ a hundredfold in KL stay readable). Returns the figure."""
    fig, axes = plt.subplots(1, len(panels), figsize=(4.2 * len(panels), 3.4), squeeze=False)
    for ax, (key, label) in zip(axes[0], panels):
        for name, rows in histories.items():
            ys = [r[key] for r in rows if key in r]
            if ys:
                ax.plot(np.arange(len(ys)), ys, label=name)
        ax.set(xlabel="step", title=label)
        if key == "kl" and log_kl:
            ax.set_yscale("symlog", linthresh=1.0)
    axes[0][0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_reward_vs_kl(histories: Mapping[str, Sequence[Mapping[str, float]]], key: str = "gold_reward",
                      smooth: int = 5, ax=None, title: str = "reward bought per nat of KL"):
    """Each run's trajectory in the (KL, reward) plane as a trailing mean over ``smooth`` steps (so every
    curve starts at step 0, near KL 0), raw steps faint: up and to the left is better (more reward for less
    drift from the reference). Returns the axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 4))
    for name, rows in histories.items():
        kl = np.array([r["kl"] for r in rows])
        ys = np.array([r[key] for r in rows])
        line, = ax.plot(_smoothed(kl, smooth), _smoothed(ys, smooth), label=name)
        ax.plot(kl, ys, ".", color=line.get_color(), alpha=0.25, ms=4)
        ax.plot(_smoothed(kl, smooth)[-1], _smoothed(ys, smooth)[-1], "o", color=line.get_color())
    ax.set(xlabel="KL to reference (nats / response)", ylabel=key.replace("_", " "), title=title)
    ax.legend(fontsize=8)
    return ax


def plot_token_strips(strips: Sequence[tuple[str, Sequence[str], Sequence[float]]], label: str = "log pi / pi_ref",
                      width: int = 14, vmax: float | None = None):
    """Per-token values of a few replies as coloured strips, the token written in each cell.

    ``strips``: (title, tokens, values) per reply, ``values`` one number per token (e.g. the log-ratio
    log pi(y_t) - log pi_ref(y_t), whose sum over the reply is its KL estimate). Red is above 0 (the policy
    likes the token more than the reference does), blue below; a reply longer than ``width`` tokens wraps.
    Returns the figure.
    """
    import matplotlib.colors as mcolors

    rows = [(title, list(tokens[i:i + width]), list(values[i:i + width]), i == 0)
            for title, tokens, values in strips for i in range(0, max(len(tokens), 1), width)]
    vmax = vmax or max([abs(v) for _, _, values in strips for v in values] + [1e-3])
    norm = mcolors.TwoSlopeNorm(vcenter=0.0, vmin=-vmax, vmax=vmax)
    cmap = plt.get_cmap("coolwarm")
    fig, ax = plt.subplots(figsize=(1.0 * width, 0.5 * len(rows) + 0.4 * len(strips) + 0.6))
    y = 0.0
    for title, tokens, values, first in rows:
        if first:
            y -= 0.55
            ax.text(-0.05, y + 0.05, title, fontsize=9, va="bottom", ha="left", weight="bold")
            y -= 0.05
        y -= 1.0
        for j, (tok, v) in enumerate(zip(tokens, values)):
            ax.add_patch(plt.Rectangle((j, y), 0.96, 0.9, color=cmap(norm(v))))
            ax.text(j + 0.48, y + 0.45, tok.replace("Ġ", " ").replace("Ċ", "\\n"), ha="center", va="center", fontsize=7)
    ax.set_xlim(-0.1, width)
    ax.set_ylim(y - 0.2, 0.1)
    ax.axis("off")
    fig.colorbar(plt.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax, fraction=0.02, pad=0.01, label=label)
    return fig


def plot_next_token_bars(tokens: Sequence[str], probs: Mapping[float, Sequence[float]], title: str = ""):
    """Next-token probabilities at several temperatures: one group of bars per token, one bar per temperature.

    ``tokens``: the k candidate tokens (e.g. the reference's top k at one position); ``probs`` maps a
    temperature to the k probabilities softmax(logits / temperature) gives them. Returns the figure.
    """
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(tokens)), 3.4))
    x = np.arange(len(tokens))
    width = 0.8 / max(len(probs), 1)
    for i, (t, p) in enumerate(probs.items()):
        ax.bar(x + (i - (len(probs) - 1) / 2) * width, p, width, label=f"temperature {t:g}")
    ax.set_xticks(x, [tok.replace("Ġ", "␣") for tok in tokens], rotation=45, ha="right")
    ax.set(ylabel="probability of the next token", title=title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------- reward models (notebook 03)
def plot_reward_training(history, ceiling: float | None = None, held_out_accuracy: float | None = None,
                         smooth: int = 10, title: str = "training the reward model"):
    """Two panels of a ``reward_model.RewardHistory``: BT loss per step, and accuracy.

    Left: the loss of every step (thin) and its running mean over ``smooth`` steps. Right: the running
    mean of the training batches' accuracy, the validation accuracy after each epoch (dots), the final
    ``held_out_accuracy`` if given (a star at the last step) and the Bayes ceiling of the held-out pairs
    (dashed). Returns the figure.
    """
    fig, (ax_l, ax_a) = plt.subplots(1, 2, figsize=(11, 3.6))
    steps = np.arange(1, len(history.loss) + 1)
    kernel = np.ones(min(smooth, len(steps))) / min(smooth, len(steps))
    ax_l.plot(steps, history.loss, color="lightgray", lw=0.8, label="each step")
    ax_l.plot(steps[len(kernel) - 1:], np.convolve(history.loss, kernel, "valid"), color="black",
              label=f"mean of {len(kernel)} steps")
    ax_l.axhline(np.log(2), ls=":", color="gray", lw=1, label="log 2 (a coin flip)")
    ax_l.set(xlabel="step", ylabel="Bradley-Terry loss", title="loss")
    ax_l.legend(fontsize=8)
    ax_a.plot(steps[len(kernel) - 1:], np.convolve(history.train_accuracy, kernel, "valid"),
              label="training batches")
    if history.val_accuracy:
        ax_a.plot(history.epoch_end_steps, history.val_accuracy, "o-", label="held-out pairs (after each epoch)")
    if held_out_accuracy is not None:
        ax_a.plot([steps[-1]], [held_out_accuracy], "*", ms=14, color="C3",
                  label=f"held-out pairs after training: {held_out_accuracy:.3f}")
    if ceiling is not None:
        ax_a.axhline(ceiling, ls="--", color="gray", lw=1, label=f"Bayes ceiling {ceiling:.3f}")
    ax_a.axhline(0.5, ls=":", color="gray", lw=1)
    ax_a.set(xlabel="step", ylabel="accuracy on the rater's clicks", title="accuracy", ylim=(0.4, 1.0))
    ax_a.legend(fontsize=8, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_calibration(pred: np.ndarray, observed: np.ndarray, counts: np.ndarray, ax=None, label: str = "",
                     title: str = "calibration on held-out pairs"):
    """Reliability diagram from ``reward_model.calibration``: observed frequency vs predicted P(first chosen).

    Points on the dashed diagonal are calibrated; marker area grows with the number of pairs in the bin.
    Call again with the same ``ax`` to compare models. Returns the axis.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(4.6, 4.2))
    keep = counts > 0
    ax.plot([0, 1], [0, 1], ls="--", color="gray", lw=1)
    sizes = 15 + 200 * counts[keep] / counts.max()
    line, = ax.plot(pred[keep], observed[keep], "-", lw=1, label=label or None)
    ax.scatter(pred[keep], observed[keep], s=sizes, color=line.get_color(), zorder=3)
    ax.set(xlabel="predicted P(first response chosen)", ylabel="observed frequency", xlim=(0, 1), ylim=(0, 1),
           title=title, aspect="equal")
    if label:
        ax.legend(fontsize=8, loc="upper left")
    return ax


def plot_accuracy_vs_ceiling(xs: Sequence[float], accuracies: Mapping[str, Sequence[float]],
                             ceilings: Sequence[float], xlabel: str, ax=None, logx: bool = False,
                             title: str = ""):
    """Held-out accuracy of one or more reward models against the Bayes ceiling, as ``xs`` varies.

    ``accuracies`` maps a model name to one accuracy per x; ``ceilings`` holds the ceiling of the
    held-out pairs at each x (dashed, shaded above: no model can expect to be there). Returns the axis.
    """
    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 3.6))
    ax.plot(xs, ceilings, "--", color="gray", label="Bayes ceiling")
    ax.fill_between(xs, ceilings, 1.0, color="gray", alpha=0.12, lw=0)
    for name, ys in accuracies.items():
        ax.plot(xs, ys, "o-", label=name)
    ax.axhline(0.5, ls=":", color="gray", lw=1)
    if logx:
        ax.set_xscale("log")
        ax.set_xticks(list(xs), [f"{x:g}" for x in xs])
        ax.minorticks_off()
    ax.set(xlabel=xlabel, ylabel="held-out accuracy", ylim=(0.45, 1.0), title=title)
    ax.legend(fontsize=8)
    return ax


def plot_feature_weights(learned: Mapping[str, float], reference: Mapping[str, float],
                         learned_label: str = "learned from clicks", reference_label: str = "gold (best linear fit)",
                         title: str = "linear reward model: one weight per feature"):
    """Horizontal bars: each feature's learned weight next to a reference weight (same keys). Returns the axis."""
    names = list(learned)
    y = np.arange(len(names))
    fig, ax = plt.subplots(figsize=(7, 0.42 * len(names) + 1.2))
    ax.barh(y - 0.2, [reference[n] for n in names], height=0.4, color="lightgray", label=reference_label)
    ax.barh(y + 0.2, [learned[n] for n in names], height=0.4, color="C0", label=learned_label)
    ax.axvline(0, color="black", lw=0.8)
    ax.set(yticks=y, yticklabels=names, xlabel="weight (reward per unit of the feature)", title=title)
    ax.invert_yaxis()
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    return ax


def _smoothed(ys: Sequence[float], window: int) -> np.ndarray:
    """Trailing mean over up to ``window`` points (the first points average what there is so far)."""
    ys = np.asarray(ys, dtype=float)
    cum = np.cumsum(np.insert(ys, 0, 0.0))
    lo = np.maximum(np.arange(1, len(ys) + 1) - window, 0)
    return (cum[1:] - cum[lo]) / (np.arange(1, len(ys) + 1) - lo)


def plot_dpo_history(history, smooth: int = 10, ceiling: float | None = None, title: str = ""):
    """Three panels of a DPO run (``rlhf_lab.dpo.DPOHistory``): loss, implicit-reward accuracy, implicit rewards.

    Per-step values are drawn faint, their trailing mean over ``smooth`` steps solid. The accuracy panel
    marks the held-out accuracy after each epoch and, if given, the ``ceiling`` (``world.bayes_ceiling``).
    Returns the figure.
    """
    fig, (ax_l, ax_a, ax_r) = plt.subplots(1, 3, figsize=(13, 3.6))
    steps = np.arange(1, len(history.loss) + 1)
    ax_l.plot(steps, history.loss, color="C0", alpha=0.25, lw=1)
    ax_l.plot(steps, _smoothed(history.loss, smooth), color="C0")
    ax_l.axhline(np.log(2), ls="--", color="gray", lw=1, label="log 2: policy = reference")
    ax_l.set(xlabel="step", title="DPO loss")
    ax_l.legend(fontsize=8)
    ax_a.plot(steps, history.reward_accuracy, color="C1", alpha=0.25, lw=1)
    ax_a.plot(steps, _smoothed(history.reward_accuracy, smooth), color="C1", label="training batches")
    if history.val_accuracy:
        ax_a.plot(history.epoch_end_steps[:len(history.val_accuracy)], history.val_accuracy, "o", color="C3",
                  label="held-out pairs (end of epoch)")
    ax_a.axhline(0.5, ls=":", color="gray", lw=1, label="chance")
    if ceiling is not None:
        ax_a.axhline(ceiling, ls="--", color="black", lw=1, label="Bayes ceiling")
    ax_a.set(xlabel="step", ylim=(0.3, 1), title="implicit-reward accuracy")
    ax_a.legend(fontsize=8, loc="lower right")
    for ys, name, color in [(history.chosen_reward, "chosen", "C2"), (history.rejected_reward, "rejected", "C3"),
                            (history.reward_margin, "margin (chosen - rejected)", "black")]:
        ax_r.plot(steps, _smoothed(ys, smooth), color=color, label=name)
    ax_r.axhline(0, ls=":", color="gray", lw=1)
    ax_r.set(xlabel="step", title="implicit reward beta * log(pi / pi_ref)")
    ax_r.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_accuracies(accuracies: Mapping[str, float], ceiling: float | None = None, ax=None,
                    title: str = "who ranks held-out pairs like the rater?"):
    """Horizontal bars of accuracies on the same pairs, with chance (0.5) and the Bayes ceiling. Returns the axis."""
    if ax is None:
        _, ax = plt.subplots(figsize=(6.5, 0.5 + 0.45 * len(accuracies)))
    names = list(accuracies)
    ys = np.arange(len(names))[::-1]
    ax.barh(ys, [accuracies[k] for k in names], color="C0")
    for y, k in zip(ys, names):
        ax.text(accuracies[k] + 0.005, y, f"{accuracies[k]:.3f}", va="center", fontsize=9)
    ax.axvline(0.5, ls=":", color="gray", lw=1, label="chance")
    if ceiling is not None:
        ax.axvline(ceiling, ls="--", color="black", lw=1, label=f"Bayes ceiling {ceiling:.3f}")
    ax.set(yticks=ys, yticklabels=names, xlim=(0.4, 1.0), xlabel="accuracy on held-out clicks", title=title)
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return ax


# ----------------------------------------------------------------------------- evaluation (notebook 08)
def _row_value(row, key: str):
    """A field of a report row: an ``evaluation.ReportRow`` or one of its dicts (``table.json``)."""
    return row[key] if isinstance(row, Mapping) else getattr(row, key)


def plot_evaluation(rows, panels: Sequence[tuple[str, str]] = (
        ("gold_reward", "gold reward\n(what people prefer)"), ("proxy_reward", "proxy reward\n(reward model)"),
        ("kl", "KL to reference\n(nats / response)"), ("win_rate", "win rate vs reference\n(gold judge, ties split)"),
        ("distinct_2", "diversity\n(distinct-2)")), title: str = ""):
    """One horizontal bar per policy in each panel, same order top to bottom: the table of notebook 08 as a figure.

    ``rows``: ``evaluation.ReportRow`` objects or their dicts. The win-rate panel marks 0.5 (as good as the
    reference), the reward panels the reference's value when a row is named "reference". Returns the figure.
    """
    names = [_row_value(r, "policy") for r in rows]
    ys = np.arange(len(names))[::-1]
    fig, axes = plt.subplots(1, len(panels), figsize=(2.6 * len(panels) + 1.2, 0.42 * len(names) + 1.4),
                             sharey=True, squeeze=False)
    ref = next((r for r in rows if _row_value(r, "policy") == "reference"), None)
    for ax, (key, label) in zip(axes[0], panels):
        values = [_row_value(r, key) for r in rows]
        ax.barh(ys, values, color=[f"C{i % 10}" for i in range(len(names))])
        for y, v in zip(ys, values):
            v = 0.0 if abs(v) < 5e-3 else v   # no "-0.00" for a policy against itself
            ax.text(max(v, 0.0), y, f" {v:.0%}" if key == "win_rate" else f" {v:.2f}", va="center", fontsize=8)
        if key == "win_rate":
            ax.axvline(0.5, ls="--", color="gray", lw=1)
            ax.set_xlim(0, 1.15)
        elif ref is not None and key != "kl":
            ax.axvline(_row_value(ref, key), ls=":", color="gray", lw=1)
        lo, hi = min(0.0, min(values)), max(values)
        if key != "win_rate":
            ax.set_xlim(lo - 0.05 * (hi - lo + 1e-9), hi + 0.3 * (hi - lo + 1e-9))
        ax.set_title(label, fontsize=9)
        ax.axvline(0, color="black", lw=0.6)
    axes[0][0].set(yticks=ys, yticklabels=names)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_overoptimization(curves, points: Mapping[str, tuple[float, float, float]] | None = None,
                          smooth: int | Mapping[str, int] = 5, xscale: str = "sqrt",
                          title: str = "over-optimisation: proxy and gold reward against KL"):
    """Gao et al. (2022) Fig. 1 for the course: proxy reward (left) and gold reward (right) against KL.

    ``curves``: ``evaluation.OveroptCurve`` objects. Best-of-n curves are drawn point by point (n marked);
    RL curves (one point per training step, noisy) as a trailing mean over ``smooth`` steps, in step order,
    with the raw steps faint (``smooth`` may map a curve's name to its own window; 1 draws every step). ``points`` maps a policy's name to ``(kl, proxy, gold)`` measured on held-out
    prompts (the table's rows), drawn as stars (in the color of the curve of the same name, if any). The KL
    axis is on a square-root scale (``xscale="sqrt"``), as Gao et al. plot d = sqrt(KL), or on a log(1 + KL)
    scale (``"log1p"``), which shows the first nats and the hundreds of a run without KL penalty side by side.
    Returns the figure.
    """
    if xscale not in ("sqrt", "log1p"):
        raise ValueError(f"xscale must be 'sqrt' or 'log1p', got {xscale!r}")
    fig, (ax_p, ax_g) = plt.subplots(1, 2, figsize=(12.5 if points else 11, 4))
    for i, c in enumerate(curves):
        color = f"C{i % 10}"
        for ax, ys in ((ax_p, c.proxy), (ax_g, c.gold)):
            if c.kind == "best-of-n":
                ax.plot(c.kl, ys, "o-", color=color, label=c.name)
                for x, y, lab in zip(c.kl, ys, c.labels):
                    ax.annotate(lab.replace("n=", ""), (x, y), textcoords="offset points", xytext=(3, -10),
                                fontsize=7, color=color)
            else:
                window = smooth.get(c.name, 5) if isinstance(smooth, Mapping) else smooth
                if window > 1:
                    ax.plot(c.kl, ys, ".", color=color, alpha=0.25, ms=4)
                ax.plot(_smoothed(np.maximum(c.kl, 0.0), window), _smoothed(ys, window), "-" if window > 1 else ".-",
                        color=color, label=f"{c.name} (training steps" + (f", mean of {window})" if window > 1 else ")"))
    curve_colors = {c.name.lower(): f"C{i % 10}" for i, c in enumerate(curves)}
    for j, (name, (kl, proxy, gold)) in enumerate((points or {}).items()):
        same = [c.name for c in curves if c.name.lower() == name.lower()
                or c.name.startswith("best-of") and name.startswith("best-of")]
        free = [f"C{i}" for i in range(10) if f"C{i}" not in curve_colors.values()] or ["black"]
        color = curve_colors[same[0].lower()] if same else free[j % len(free)]   # a star takes its curve's color, or one no curve has
        for ax, y in ((ax_p, proxy), (ax_g, gold)):
            ax.plot([max(kl, 0.0)], [y], "*", ms=13, color=color, markeredgecolor="black", markeredgewidth=0.6,
                    label=f"{name} (held-out prompts)" if ax is ax_g else None)
    kl_max = max([max(c.kl, default=0.0) for c in curves] + [p[0] for p in (points or {}).values()] + [1.0])
    for ax, label in ((ax_p, "proxy reward (reward model)"), (ax_g, "gold reward (what people prefer)")):
        if xscale == "sqrt":
            ax.set_xscale("function", functions=(lambda x: np.sqrt(np.maximum(x, 0)), np.square))
        else:
            ax.set_xscale("function", functions=(lambda x: np.log1p(np.maximum(x, 0)), np.expm1))
            ticks = [t for t in (0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000) if t <= 1.05 * kl_max]
            ax.set_xticks(ticks, [str(t) for t in ticks])
            ax.minorticks_off()
        ax.set(xlabel=f"KL to reference (nats / response, {'square-root' if xscale == 'sqrt' else 'log(1 + KL)'} "
               "scale)", ylabel=label, title=label)
        ax.set_xlim(left=0)
    ax_p.legend(fontsize=7, loc="lower right")
    if points:
        ax_g.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    else:
        ax_g.legend(fontsize=7, loc="lower right")
    fig.suptitle(title)
    fig.tight_layout()
    return fig

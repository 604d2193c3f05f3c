"""One trainer for every model that learns from preference pairs: a reward model, or a policy with DPO.

Training a reward model (``reward_model.train_reward_model``) and training a policy with DPO
(``dpo.train_dpo``) are the same loop. Each step takes the records of a few groups, gives every distinct
response among them one *score* with gradients, puts each record's two scores into a pairwise loss, and takes
an AdamW step. Three things differ, and :func:`train_pairwise` takes them as arguments:

* how a response is scored: a reward model's scalar head, or the policy's sequence log-probability
  relative to the frozen reference, ``log pi(y|x) - log pi_ref(y|x)`` (DPO's implicit reward over beta);
* the loss of (chosen scores, rejected scores, targets): ``bradley_terry.bradley_terry_loss``, or
  ``dpo.logratio_loss`` (DPO and its family);
* the validation metric measured after each epoch.

The rest is written once, here: whole groups of records per batch (:func:`group_batches`, so the k(k-1)/2
pairs of a ranking of k responses cost k forward passes: InstructGPT's trick, Ouyang et al. 2022, Sec. 3.5),
AdamW with decay on matrices only (``pretrain.make_optimizer``), linear warm-up then linear decay
(:func:`warmup_then_decay`), exact micro-batches (``accumulation.backward_in_micro_batches``), gradient
clipping, a stop with the step's number when the loss is not finite, a progress bar and the history.

Shapes: N records, U distinct (prompt, response) texts among them (the *rows*); per step B records and R
distinct rows. A record is two rows, its chosen and its rejected response (:class:`Pairs`).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Protocol, Sequence, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

from rlhf_lab.accumulation import backward_in_micro_batches
from rlhf_lab.bradley_terry import tie_targets
from rlhf_lab.preferences import PreferenceRecord
from rlhf_lab.pretrain import make_optimizer


# ----------------------------------------------------------------------------- the records, by row
@dataclass
class Pairs:
    """Preference records as the trainer sees them: each record is two rows of the distinct responses."""
    chosen: torch.Tensor          # (N,) long: row of each record's chosen response
    rejected: torch.Tensor        # (N,) long: row of each record's rejected response
    targets: torch.Tensor         # (N,) 1 for a click, 0.5 for a tie (bradley_terry.tie_targets)
    groups: list[list[int]]       # record indices that always share a batch


def index_records(records: Sequence[PreferenceRecord], group_by: str) -> tuple[list[tuple[str, str]], Pairs]:
    """The distinct (prompt, response) texts of ``records`` in row order (U of them), and the records as :class:`Pairs`.

    ``group_by`` says which records go into one batch together:
    ``"prompt"``: all records about one prompt text; ``"response"``: records linked by shared responses (e.g.
    all pairs of one ranking), so that independent pairs about the same prompt may land in different batches.
    Groups are listed in the order of their first record.
    """
    if group_by not in ("prompt", "response"):
        raise ValueError(f"group_by must be 'prompt' or 'response', got {group_by!r}")
    index: dict[tuple[str, str], int] = {}
    chosen = [index.setdefault((r.prompt, r.chosen), len(index)) for r in records]
    rejected = [index.setdefault((r.prompt, r.rejected), len(index)) for r in records]
    if group_by == "prompt":
        keys = [r.prompt for r in records]
    else:
        parent = list(range(len(index)))            # union-find over rows: a record links its two responses

        def root(i: int) -> int:
            while parent[i] != i:
                parent[i] = parent[parent[i]]
                i = parent[i]
            return i

        for c, r in zip(chosen, rejected):
            parent[root(c)] = root(r)
        keys = [root(c) for c in chosen]
    groups: dict = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    return list(index), Pairs(torch.tensor(chosen), torch.tensor(rejected), tie_targets(records), list(groups.values()))


def group_batches(groups: list[list[int]], batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """One epoch: groups in random order, packed into batches of at least ``batch_size`` records."""
    batches, current = [], []
    for g in torch.randperm(len(groups), generator=generator).tolist():
        current += groups[g]
        if len(current) >= batch_size:
            batches.append(torch.tensor(current))
            current = []
    if current:
        batches.append(torch.tensor(current))
    return batches


def warmup_then_decay(optimizer: torch.optim.Optimizer, total: int,
                      warmup_fraction: float) -> torch.optim.lr_scheduler.LambdaLR:
    """The learning-rate schedule of the course's preference trainers: linear warm-up from 0 over
    ``round(warmup_fraction * total)`` steps (at least 1), then linear decay to 0 at step ``total``."""
    warmup = max(1, round(warmup_fraction * total))
    return torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))


def share_right(margin: torch.Tensor) -> float:
    """Share of pairs with margin > 0, a margin of exactly 0 (a tie of the rewards) counting half. margin: (N,)."""
    return float(((margin > 0).float() + 0.5 * (margin == 0).float()).mean())


# ----------------------------------------------------------------------------- the trainer
#: ``score_rows(rows, sub) -> (len(sub),)``: the scores, with gradients, of rows ``rows[sub]``. ``rows`` (R,) are
#: the step's distinct rows, ``sub`` the positions in ``rows`` of one forward pass (all R without micro-batches).
RowScorer = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
#: ``loss(chosen_scores (B,), rejected_scores (B,), targets (B,)) -> (scalar loss, chosen_rewards (B,),
#: rejected_rewards (B,))``, the rewards detached (for the history).
PairwiseLoss = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


class PairwiseConfig(Protocol):
    """The settings :func:`train_pairwise` reads; ``reward_model.RewardTrainConfig`` and ``dpo.DPOConfig`` have them."""
    epochs: int
    batch_size: int
    lr: float
    weight_decay: float
    warmup_fraction: float
    max_grad_norm: float
    seed: int
    micro_batch_size: int | None


class PairwiseHistory(Protocol):
    """The fields of a history that :func:`train_pairwise` fills itself (the rest is ``record_step``'s)."""
    loss: list[float]
    val_accuracy: list[float]
    epoch_end_steps: list[int]
    seconds: float


History = TypeVar("History", bound=PairwiseHistory)


def clipped_step(model: torch.nn.Module, optimizer: torch.optim.Optimizer,
                 schedule: torch.optim.lr_scheduler.LRScheduler, max_grad_norm: float) -> None:
    """The end of a training step: clip the global gradient norm to ``max_grad_norm``, step, advance the schedule."""
    torch.nn.utils.clip_grad_norm_(model.parameters(), max_grad_norm)
    optimizer.step()
    schedule.step()


def tick(bar, losses: Sequence[float], **shown: float) -> None:
    """Advance a tqdm bar one step; every 10 steps show the mean of the last 10 ``losses`` and ``shown``."""
    bar.update(1)
    if len(losses) % 10 == 0:
        bar.set_postfix(loss=f"{np.mean(losses[-10:]):.3f}", **{k: f"{v:.3f}" for k, v in shown.items()})


def train_pairwise(model: torch.nn.Module, pairs: Pairs, score_rows: RowScorer, loss: PairwiseLoss,
                   config: PairwiseConfig, history: History,
                   record_step: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], None] = lambda *step: None,
                   validate: Callable[[], float] | None = None, *, max_steps: int | None = None,
                   name: str = "pairwise", hint: str = "", progress: bool = True) -> History:
    """Train ``model`` in place on ``pairs`` with a pairwise ``loss`` on the scores of ``score_rows``.

    Each epoch packs whole groups into batches of at least ``config.batch_size`` records (:func:`group_batches`,
    order seeded by ``config.seed``). Each step scores the batch's R distinct rows once (``score_rows``, in
    micro-batches of ``config.micro_batch_size`` rows), computes ``loss`` of the B records' chosen and rejected
    scores and their targets, backpropagates, clips the gradient norm to ``config.max_grad_norm`` and takes an
    AdamW step (``pretrain.make_optimizer``) on the schedule of :func:`warmup_then_decay`. Stops after
    ``max_steps`` steps when given.

    Per step, ``history.loss`` gets the loss and ``record_step(chosen_rewards, rejected_rewards, scores)`` is
    called with the loss's (B,) rewards and the (R,) detached scores, to record the rest. After each epoch
    ``history.epoch_end_steps`` gets the step count and, if ``validate`` is given, ``history.val_accuracy`` gets
    ``validate()`` (the model's train/eval mode is restored after it). ``history.seconds``: the loop's time.
    The model trains in the mode it comes in (the caller chooses dropout) and is left in eval mode.
    Raises FloatingPointError naming the step if the loss is not finite (``name`` and ``hint`` go into the
    message and the progress bar). Returns ``history``.
    """
    generator = torch.Generator().manual_seed(config.seed)
    plan = [group_batches(pairs.groups, config.batch_size, generator) for _ in range(config.epochs)]
    total = sum(len(epoch) for epoch in plan)
    if max_steps is not None:
        total = min(total, max_steps)
    optimizer = make_optimizer(model, config)
    schedule = warmup_then_decay(optimizer, total, config.warmup_fraction)

    start = time.perf_counter()
    accuracies: list[float] = []                      # the batch's share ranked right, for the progress bar
    bar = tqdm(total=total, desc=name, disable=not progress)
    for epoch, batches in enumerate(plan):
        for records in batches[:total - len(history.loss)]:
            def check(step_loss: torch.Tensor) -> None:
                if not torch.isfinite(step_loss):
                    bar.close()
                    raise FloatingPointError(
                        f"{name} loss is {step_loss.item()} at step {len(history.loss) + 1} (epoch {epoch + 1}): "
                        f"training diverged. Lower the learning rate (lr={config.lr}){hint}.")

            optimizer.zero_grad(set_to_none=True)
            step_loss, chosen_rewards, rejected_rewards, scores = _backward(pairs, records, score_rows, loss,
                                                                            config.micro_batch_size, check)
            clipped_step(model, optimizer, schedule, config.max_grad_norm)
            history.loss.append(step_loss.item())
            record_step(chosen_rewards, rejected_rewards, scores)
            accuracies.append(share_right(chosen_rewards - rejected_rewards))
            tick(bar, history.loss, acc=np.mean(accuracies[-10:]))
        history.epoch_end_steps.append(len(history.loss))
        if validate is not None:
            was_training = model.training
            history.val_accuracy.append(validate())
            model.train(was_training)
            bar.set_postfix(loss=f"{np.mean(history.loss[-len(batches):]):.3f}",
                            val_acc=f"{history.val_accuracy[-1]:.3f}")
        if len(history.loss) >= total:
            break
    bar.close()
    model.eval()
    history.seconds = time.perf_counter() - start
    return history


def _backward(pairs: Pairs, records: torch.Tensor, score_rows: RowScorer, loss: PairwiseLoss,
              micro_batch_size: int | None, check: Callable[[torch.Tensor], None]
              ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """One step's loss, backpropagated: returns (loss, chosen_rewards (B,), rejected_rewards (B,), scores (R,))."""
    # every distinct response of the batch once: rows (R,), and where each record's two responses sit in them
    rows, where = torch.unique(torch.cat([pairs.chosen[records], pairs.rejected[records]]), return_inverse=True)
    b = len(records)

    def loss_of_scores(scores: torch.Tensor):                     # (R,) one score per distinct response
        step_loss, chosen_rewards, rejected_rewards = loss(scores[where[:b]], scores[where[b:]],
                                                           pairs.targets[records].to(scores.device))
        return step_loss, (chosen_rewards, rejected_rewards)

    step_loss, scores, (chosen_rewards, rejected_rewards) = backward_in_micro_batches(
        lambda sub: score_rows(rows, sub), len(rows), loss_of_scores, micro_batch_size, check=check)
    return step_loss, chosen_rewards, rejected_rewards, scores

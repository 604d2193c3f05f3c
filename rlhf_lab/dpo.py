"""Direct Preference Optimisation (DPO): RLHF's objective trained straight from preference pairs.

Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
(https://arxiv.org/abs/2305.18290). The KL-regularised objective of notebooks 01 and 05,

    maximise  E_{y ~ pi}[ r(x, y) ] - beta * KL( pi(.|x) || pi_ref(.|x) ),

has the closed-form optimum ``pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x)``. Solved for the reward,
``r(x, y) = beta * log pi*(y|x) / pi_ref(y|x) + beta * log Z(x)``. Put that into the Bradley-Terry
likelihood of the clicks and Z(x) cancels (both responses answer the same prompt): the policy itself
*is* a reward model, with the **implicit reward**

    r_hat(x, y) = beta * ( log pi(y|x) - log pi_ref(y|x) ),

and training it with the Bradley-Terry loss of notebook 03 (:func:`rlhf_lab.reward_model.bradley_terry_loss`)
trains the policy. No reward model, no sampling, no value function: one supervised loss on the pairs.

Shapes: B = pairs in a batch. Sequence log-probs ``log pi(y|x)`` are sums over response tokens
(``generation.sequence_logprob``), one number per response: (B,).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab import world
from rlhf_lab.accumulation import backward_in_micro_batches
from rlhf_lab.generation import Batch, encode, sequence_logprob
from rlhf_lab.models import checkpointing_on, disable_dropout, gradient_forward
from rlhf_lab.preferences import PreferenceRecord
from rlhf_lab.reward_model import accuracy, bradley_terry_loss, group_batches, tie_targets


# ----------------------------------------------------------------------------- the loss
def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
             targets: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO loss of a batch of preference pairs, and the implicit rewards of both sides.

    policy_chosen_logps:   log pi(y_w | x) of the chosen responses.          Shape: (B,)
    policy_rejected_logps: log pi(y_l | x) of the rejected responses.        Shape: (B,)
    ref_chosen_logps:      log pi_ref(y_w | x) under the frozen reference.   Shape: (B,)
    ref_rejected_logps:    log pi_ref(y_l | x).                              Shape: (B,)
    beta:                  KL strength of the objective DPO solves (> 0); also the scale of the rewards.
    targets:               optional (B,): 1 for an ordinary click, 0.5 for a tie (as in bradley_terry_loss).

    Returns ``(loss, chosen_rewards, rejected_rewards)``: the scalar mean loss, and the implicit rewards
    ``beta * (log pi - log pi_ref)`` of the chosen and the rejected responses, (B,) each, detached.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps          # (B,) log pi(y_w|x) / pi_ref(y_w|x)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps    # (B,) log pi(y_l|x) / pi_ref(y_l|x)
    # DPO (Eq. 7 of https://arxiv.org/abs/2305.18290):
    #   loss = -mean log sigmoid( beta * (chosen_logratios - rejected_logratios) )
    # i.e. the Bradley-Terry loss of the implicit rewards beta * log(pi / pi_ref).
    loss = bradley_terry_loss(beta * chosen_logratios, beta * rejected_logratios, targets=targets)  # scalar
    chosen_rewards = beta * chosen_logratios.detach()                  # (B,)
    rejected_rewards = beta * rejected_logratios.detach()              # (B,)
    return loss, chosen_rewards, rejected_rewards


# ----------------------------------------------------------------------------- log-probs of many pairs
def _rows(batch: Batch, idx: torch.Tensor) -> Batch:
    """Rows ``idx`` of a batch, with columns that are padding in all of those rows cut off."""
    prompt_mask, response_mask = batch.prompt_mask[idx], batch.response_mask[idx]
    p = int(prompt_mask.sum(1).max())        # prompts are left-padded: keep the last p columns
    t = int(response_mask.sum(1).max())      # responses are right-padded: keep the first t columns
    P = prompt_mask.shape[1]
    return Batch(batch.prompt_ids[idx, P - p:], prompt_mask[:, P - p:],
                 batch.response_ids[idx, :t], response_mask[:, :t])


def _logps(model: PreTrainedModel, batch: Batch, idx: torch.Tensor) -> torch.Tensor:
    """log pi(y|x) of rows ``idx`` of ``batch`` under ``model``. Shape: (len(idx),)."""
    b = _rows(batch, idx).to(model.device)
    return sequence_logprob(model, b.prompt_ids, b.prompt_mask, b.response_ids, b.response_mask)


@torch.no_grad()
def sequence_logprobs(model: PreTrainedModel, batch: Batch, batch_size: int = 128) -> torch.Tensor:
    """log pi(y|x) of every row of ``batch`` (no gradients), ``batch_size`` rows per forward pass. Shape: (N,) on CPU."""
    was_training = model.training
    model.eval()
    order = torch.argsort(batch.prompt_mask.sum(1) + batch.response_mask.sum(1))  # similar lengths together
    out = torch.empty(len(batch))
    for idx in order.split(batch_size):
        out[idx] = _logps(model, batch, idx).float().cpu()
    model.train(was_training)
    return out


@dataclass
class PairData:
    """Preference records as :func:`train_dpo` sees them: every distinct (prompt, response) encoded once.

    Comparison data often reuses responses: InstructGPT-style data (``reward_model.simulate_comparisons``)
    has k responses per prompt and all k(k-1)/2 pairs of them. Scoring each distinct response once and
    keeping a prompt's pairs in one batch makes all those pairs cost k forward passes (Ouyang et al. 2022, Sec. 3.5).
    """
    rows: Batch                   # U rows: each distinct (prompt, response) once
    chosen: torch.Tensor          # (N,) long: row of each record's chosen response
    rejected: torch.Tensor        # (N,) long: row of each record's rejected response
    targets: torch.Tensor         # (N,) 1 for a click, 0.5 for a tie
    groups: list[list[int]]       # record indices, one list per prompt text

    @classmethod
    def from_records(cls, tokenizer: PreTrainedTokenizerBase, records: Sequence[PreferenceRecord]) -> "PairData":
        """Encode the distinct (prompt, response) texts of ``records`` and group the records by prompt."""
        index: dict[tuple[str, str], int] = {}
        chosen = [index.setdefault((r.prompt, r.chosen), len(index)) for r in records]
        rejected = [index.setdefault((r.prompt, r.rejected), len(index)) for r in records]
        groups: dict[str, list[int]] = {}
        for i, r in enumerate(records):
            groups.setdefault(r.prompt, []).append(i)
        rows = encode(tokenizer, [p for p, _ in index], [y for _, y in index])
        return cls(rows, torch.tensor(chosen), torch.tensor(rejected), tie_targets(records), list(groups.values()))


# ----------------------------------------------------------------------------- implicit reward
def implicit_reward(policy: PreTrainedModel, ref_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    prompts: Sequence[str], responses: Sequence[str], beta: float,
                    batch_size: int = 128) -> torch.Tensor:
    """DPO's implicit reward ``beta * (log pi(y|x) - log pi_ref(y|x))`` of each (prompt, response). Shape: (B,).

    It equals the reward the policy is optimal for, up to a per-prompt constant ``beta * log Z(x)``, so it
    ranks two responses to the same prompt the way that reward does (but cannot compare across prompts).
    """
    prompts = [world.prompt_text(p) for p in prompts]
    batch = encode(tokenizer, list(prompts), list(responses))
    return beta * (sequence_logprobs(policy, batch, batch_size) - sequence_logprobs(ref_model, batch, batch_size))


def implicit_accuracy(policy: PreTrainedModel, ref_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                      records: Sequence[PreferenceRecord], beta: float = 1.0, batch_size: int = 128) -> float:
    """Share of pairs (ties left out) where the implicit reward of ``chosen`` beats that of ``rejected``.

    The same measure as ``reward_model.accuracy``, with the policy as the reward model. ``beta`` only
    scales the rewards, so it does not change the accuracy (any beta > 0 gives the same number).
    """
    return accuracy(implicit_scorer(policy, ref_model, tokenizer, beta, batch_size), records)


def implicit_scorer(policy: PreTrainedModel, ref_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
                    beta: float, batch_size: int = 128) -> Callable[[Sequence[str], Sequence[str]], torch.Tensor]:
    """The implicit reward as a ``reward_model.Scorer``, f(prompts, responses) -> (B,): pass it to
    ``reward_model.evaluate`` to put the DPO policy's accuracy next to the Bayes ceiling."""
    def scorer(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
        return implicit_reward(policy, ref_model, tokenizer, prompts, responses, beta, batch_size)
    return scorer


# ----------------------------------------------------------------------------- training
@dataclass
class DPOConfig:
    """How :func:`train_dpo` trains a policy on preference pairs."""
    beta: float = 0.25            # KL strength: small lets the policy move far from the reference, large keeps it close
    lr: float = 3e-4              # peak AdamW learning rate (the tiny policy takes a large one; TRL's default for big models is 1e-6)
    epochs: int = 1               # passes over the training pairs
    max_steps: int | None = None  # stop after this many optimizer steps (None: run all epochs)
    batch_size: int = 240         # pairs per step, at least: all pairs about one prompt go into the same batch
                                  # (2 prompts of the course's 16-way comparisons = 240 pairs, 32 responses)
    weight_decay: float = 0.0     # AdamW decay on matrices (not biases, LayerNorms)
    warmup_fraction: float = 0.1  # share of steps with linear warm-up from 0; then linear decay to 0
    max_grad_norm: float = 1.0    # clip the global gradient norm to this
    seed: int = 0                 # seeds the order of the pairs in every epoch
    eval_batch_size: int = 128    # responses per forward pass when computing log-probs without gradients
    micro_batch_size: int | None = None  # responses per forward pass with gradients (None: a step's all at once);
                                  # the same gradient in less memory (accumulation.py)


@dataclass
class DPOHistory:
    """What :func:`train_dpo` records: one entry per step, and one per epoch for held-out accuracy."""
    loss: list[float] = field(default_factory=list)             # DPO loss of each step's batch
    reward_accuracy: list[float] = field(default_factory=list)  # share of the batch with r_hat(chosen) > r_hat(rejected), ties half
    reward_margin: list[float] = field(default_factory=list)    # mean r_hat(chosen) - r_hat(rejected) over the batch
    chosen_reward: list[float] = field(default_factory=list)    # mean implicit reward of the chosen responses
    rejected_reward: list[float] = field(default_factory=list)  # mean implicit reward of the rejected responses
    kl_proxy: list[float] = field(default_factory=list)         # mean 0.5 * (log pi/pi_ref)^2 of the batch's distinct responses
    val_accuracy: list[float] = field(default_factory=list)     # implicit-reward accuracy on val pairs, per epoch
    epoch_end_steps: list[int] = field(default_factory=list)    # steps done at the end of each epoch
    seconds: float = 0.0                                        # wall-clock time (reference pass and validation included)


def train_dpo(policy: PreTrainedModel, ref_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              records: Sequence[PreferenceRecord], config: DPOConfig | None = None,
              val_records: Sequence[PreferenceRecord] | None = None, progress: bool = True) -> DPOHistory:
    """Train ``policy`` in place with :func:`dpo_loss` on preference records; ``ref_model`` stays frozen.

    The reference log-probs never change, so they are computed once, up front, without gradients. Each
    step takes the pairs of a few prompts (at least ``batch_size`` pairs, see :class:`PairData`) and needs one
    forward pass of the policy over their distinct responses; with all k(k-1)/2 pairs of k responses per
    prompt, that is k responses for k(k-1)/2 pairs. AdamW, linear warm-up then linear decay, gradient clipping. The policy runs
    with dropout off (eval mode, as TRL's ``disable_dropout``) so that log pi and log pi_ref compare like
    with like. Ties train towards equal implicit rewards (target 0.5).

    Per step the history records the loss, the reward accuracy and margin on the batch, and
    ``kl_proxy``: 0.5 * (log pi(y|x) - log pi_ref(y|x))^2 averaged over the batch's responses, which is 0
    at the start and grows as the policy moves. It is measured on the *dataset's* responses, not on samples
    from the policy, so it is a proxy for drift, not the KL itself (``evaluation.kl_to_reference`` is).
    After each epoch the implicit-reward accuracy on ``val_records`` is measured (skipped when None/empty).
    Raises FloatingPointError with the step number if the loss stops being finite. Returns a :class:`DPOHistory`.
    """
    from rlhf_lab.pretrain import make_optimizer  # AdamW, decay on matrices only (one copy, in pretrain.py)

    config = config or DPOConfig()
    if not records:
        raise ValueError("train_dpo needs at least one preference record")
    if not any(p.requires_grad for p in policy.parameters()):
        raise ValueError("the policy has no trainable parameters (a frozen copy?): call "
                         "p.requires_grad_(True) on its parameters, or pass the model from models.load_policy")
    if policy is ref_model:
        raise ValueError("policy and ref_model are the same object: pass models.frozen_copy(policy) as ref_model")
    start = time.perf_counter()
    data = PairData.from_records(tokenizer, records)
    ref_logps = sequence_logprobs(ref_model, data.rows, config.eval_batch_size)           # (U,) computed once
    val, val_ref = None, None
    val_records = [r for r in val_records or () if not r.tie]
    if val_records:
        val = PairData.from_records(tokenizer, val_records)
        val_ref = sequence_logprobs(ref_model, val.rows, config.eval_batch_size)

    generator = torch.Generator().manual_seed(config.seed)
    plan = [group_batches(data.groups, config.batch_size, generator) for _ in range(config.epochs)]
    total = sum(len(epoch) for epoch in plan)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    warmup = max(1, round(config.warmup_fraction * total))
    optimizer = make_optimizer(policy, config)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: (s + 1) / warmup if s < warmup else max(0.0, (total - s) / max(1, total - warmup)))

    history = DPOHistory()
    if checkpointing_on(policy):
        disable_dropout(policy)   # checkpointing runs in train mode only; with dropout at 0 that changes nothing
    policy.eval()   # dropout off; gradients still flow
    bar = tqdm(total=total, desc="DPO", disable=not progress)
    for epoch, batches in enumerate(plan):
        for idx in batches[:total - len(history.loss)]:
            # every distinct response of the batch once: rows (R,), and where each pair's two responses sit in them
            rows, where = torch.unique(torch.cat([data.chosen[idx], data.rejected[idx]]), return_inverse=True)
            b = len(idx)

            def loss_fn(policy_logps, idx=idx, where=where, b=b):           # (R,) log pi, with gradients
                policy_logps = policy_logps.cpu()
                loss, chosen_r, rejected_r = dpo_loss(policy_logps[where[:b]], policy_logps[where[b:]],
                                                      ref_logps[data.chosen[idx]], ref_logps[data.rejected[idx]],
                                                      config.beta, data.targets[idx])
                return loss, (chosen_r, rejected_r)

            def check(loss, epoch=epoch):
                if not torch.isfinite(loss):
                    bar.close()
                    raise FloatingPointError(
                        f"DPO loss is {loss.item()} at step {len(history.loss) + 1} (epoch {epoch + 1}): training "
                        f"diverged. Lower the learning rate (lr={config.lr}) or raise beta (beta={config.beta}).")

            optimizer.zero_grad(set_to_none=True)
            def forward(sub, rows=rows):                                    # (len(sub),) log pi, with gradients
                with gradient_forward(policy):
                    return _logps(policy, data.rows, rows[sub])

            loss, policy_logps, (chosen_r, rejected_r) = backward_in_micro_batches(
                forward, len(rows), loss_fn, config.micro_batch_size, check=check)
            policy_logps = policy_logps.cpu()
            torch.nn.utils.clip_grad_norm_(policy.parameters(), config.max_grad_norm)
            optimizer.step()
            schedule.step()
            _record(history, loss, chosen_r, rejected_r, policy_logps.detach() - ref_logps[rows])
            bar.update(1)
            if len(history.loss) % 10 == 0:
                bar.set_postfix(loss=f"{np.mean(history.loss[-10:]):.3f}",
                                acc=f"{np.mean(history.reward_accuracy[-10:]):.2f}")
        history.epoch_end_steps.append(len(history.loss))
        if val is not None:
            logratios = sequence_logprobs(policy, val.rows, config.eval_batch_size) - val_ref
            margin = logratios[val.chosen] - logratios[val.rejected]
            history.val_accuracy.append(_share_right(margin))
            bar.set_postfix(loss=f"{np.mean(history.loss[-len(batches):]):.3f}",
                            val_acc=f"{history.val_accuracy[-1]:.3f}")
        if len(history.loss) >= total:
            break
    bar.close()
    policy.eval()
    history.seconds = time.perf_counter() - start
    return history


def _share_right(margin: torch.Tensor) -> float:
    """Share of pairs with margin > 0, a margin of exactly 0 (a tie of the rewards) counting half. margin: (N,)."""
    return float(((margin > 0).float() + 0.5 * (margin == 0).float()).mean())


def _record(history: DPOHistory, loss: torch.Tensor, chosen_rewards: torch.Tensor,
            rejected_rewards: torch.Tensor, logratios: torch.Tensor) -> None:
    """Append one step's metrics to ``history``; ``logratios`` (R,) are those of the batch's distinct responses."""
    history.loss.append(loss.item())
    history.reward_accuracy.append(_share_right(chosen_rewards - rejected_rewards))
    history.reward_margin.append((chosen_rewards - rejected_rewards).mean().item())
    history.chosen_reward.append(chosen_rewards.mean().item())
    history.rejected_reward.append(rejected_rewards.mean().item())
    history.kl_proxy.append((0.5 * logratios.pow(2)).mean().item())

"""KTO: alignment from thumbs up and thumbs down, no pairs needed.

Ethayarajh et al. 2024, "KTO: Model Alignment as Prospect Theoretic Optimization" (https://arxiv.org/abs/2402.01306).
DPO needs two responses to one prompt and a click between them. KTO learns from single responses labelled
*desirable* or *undesirable*, the kind of feedback a thumbs-up button or a 1-5 score (``ScoreRecord``) gives.

It keeps DPO's implicit reward, here ``r(x, y) = log pi(y|x) - log pi_ref(y|x)`` (beta sits in the loss),
and, as prospect theory says people do, judges it against a reference point z0 rather than against a second
response: a gain is r above z0, a loss r below it. z0 is the KL divergence of the policy from the reference,
estimated on the batch (below), so a response only counts as a gain if the policy likes it more than it likes
responses in general. The loss
(Eq. 8; TRL's ``kto_trainer.py`` cites the same loss as Eq. 7) is, per example,

    desirable:    lambda_D * (1 - sigmoid(beta * (r(x, y) - z0)))
    undesirable:  lambda_U * (1 - sigmoid(beta * (z0 - r(x, y))))

averaged over the batch. ``lambda_D`` and ``lambda_U`` (``desirable_weight``, ``undesirable_weight``) balance
unequal numbers of the two kinds; the paper suggests lambda_D n_D / (lambda_U n_U) in [1, 4/3].

Shapes: B = examples in a batch. Sequence log-probs are sums over response tokens, one number per response: (B,).
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import NamedTuple, Sequence

import torch
from tqdm.auto import tqdm
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab.dpo import _logps, check_policy_and_reference, sequence_logprobs
from rlhf_lab.pairwise import clipped_step, tick, warmup_then_decay
from rlhf_lab.generation import encode
from rlhf_lab.models import checkpointing_on, disable_dropout, gradient_forward
from rlhf_lab.preferences import ScoreRecord


class KTOExample(NamedTuple):
    """One piece of unpaired feedback: ``response`` to ``prompt`` was good (``desirable``) or bad."""
    prompt: str
    response: str
    desirable: bool


# ----------------------------------------------------------------------------- the loss
def kto_loss(policy_logps: torch.Tensor, ref_logps: torch.Tensor, desirable: torch.Tensor,
             kl_estimate: torch.Tensor | float, beta: float, desirable_weight: float = 1.0,
             undesirable_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The KTO loss of a batch of unpaired examples, and the implicit rewards of both kinds.

    policy_logps:       log pi(y | x) of each example's response.             Shape: (B,)
    ref_logps:          log pi_ref(y | x) under the frozen reference.         Shape: (B,)
    desirable:          True for a desirable example, False for an undesirable one.  Shape: (B,) bool
    kl_estimate:        the reference point z0 (:func:`kl_estimate`), a scalar; detached here, so no gradient
                        flows through it (as in the paper and TRL).
    beta:               > 0, the scale of the implicit reward inside the sigmoid.
    desirable_weight:   lambda_D, the weight of the desirable examples' losses.
    undesirable_weight: lambda_U, the weight of the undesirable examples' losses.

    Returns ``(loss, desirable_rewards, undesirable_rewards)``: the scalar loss, the mean over all B examples
    of the weighted per-example losses (as TRL's ``KTOTrainer``), and ``beta * (log pi - log pi_ref)`` of the
    desirable examples (n_D,) and of the undesirable ones (n_U,), detached.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    if policy_logps.dim() != 1 or policy_logps.shape != ref_logps.shape or desirable.shape != policy_logps.shape:
        raise ValueError(f"policy_logps, ref_logps and desirable must all have shape (B,), got "
                         f"{tuple(policy_logps.shape)}, {tuple(ref_logps.shape)} and {tuple(desirable.shape)}")
    if desirable.dtype != torch.bool:
        raise ValueError(f"desirable must be a bool tensor, got dtype {desirable.dtype}")
    z0 = torch.as_tensor(kl_estimate, dtype=policy_logps.dtype).detach()   # scalar reference point
    logratios = policy_logps - ref_logps                                   # (B,) log pi(y|x) / pi_ref(y|x)
    # KTO (Eq. 8 of https://arxiv.org/abs/2402.01306): lambda_y - v(x, y), with the value v of a gain or a loss
    desirable_losses = 1 - torch.sigmoid(beta * (logratios[desirable] - z0))        # (n_D,)
    undesirable_losses = 1 - torch.sigmoid(beta * (z0 - logratios[~desirable]))     # (n_U,)
    loss = torch.cat([desirable_weight * desirable_losses, undesirable_weight * undesirable_losses]).mean()
    rewards = beta * logratios.detach()                                    # (B,)
    return loss, rewards[desirable], rewards[~desirable]


def kl_estimate(policy_mismatched_logps: torch.Tensor, ref_mismatched_logps: torch.Tensor) -> torch.Tensor:
    """KTO's reference point z0: the batch mean of log pi(y'|x) - log pi_ref(y'|x), clamped at 0, detached.

    policy_mismatched_logps, ref_mismatched_logps: (B,) log-probs of *mismatched* pairs (x_i, y') with y' the
    response of another example of the batch (:func:`mismatched_responses`). The mean of log(pi / pi_ref) over
    responses y ~ pi would be KL(pi || pi_ref); the batch's responses are not samples of pi, so this is a cheap,
    biased estimate, and as a KL cannot be negative it is clamped at 0. Returns a scalar tensor.
    """
    return (policy_mismatched_logps - ref_mismatched_logps).mean().clamp(min=0).detach()


def mismatched_responses(responses: Sequence[str]) -> list[str]:
    """The batch's responses shifted by one, [y_n, y_1, ..., y_{n-1}], to pair with prompts [x_1, ..., x_n].

    Each prompt gets another example's response (for n > 1), so the KL estimate uses the same responses as the
    rewards, on other prompts: TRL's ``KTOTrainer`` builds its KL pairs the same way (x_1, y_n), (x_2, y_1), ...
    """
    return list(responses[-1:]) + list(responses[:-1])


def examples_from_scores(score_records: Sequence[ScoreRecord], good: int = 4, bad: int = 2) -> list[KTOExample]:
    """Turn 1-5 scores into KTO examples: score >= ``good`` is desirable, score <= ``bad`` undesirable.

    Scores strictly between ``bad`` and ``good`` (3 by default) are dropped: a middling score says neither
    "more of this" nor "less of this". Raises ValueError unless 1 <= bad < good <= 5. Keeps the records' order.
    """
    if not 1 <= bad < good <= 5:
        raise ValueError(f"need 1 <= bad < good <= 5, got bad={bad}, good={good}")
    return [KTOExample(r.prompt, r.response, r.score >= good)
            for r in score_records if r.score >= good or r.score <= bad]


# ----------------------------------------------------------------------------- training
@dataclass
class KTOConfig:
    """How :func:`train_kto` trains a policy on unpaired feedback."""
    beta: float = 0.1               # scale of the implicit reward inside the sigmoid (TRL's KTOConfig default)
    desirable_weight: float = 1.0   # lambda_D: weight of the desirable examples' losses
    undesirable_weight: float = 1.0  # lambda_U: weight of the undesirable examples' losses
    lr: float = 3e-4                # peak AdamW learning rate (large, for the tiny policy; as DPOConfig)
    epochs: int = 1                 # passes over the examples
    max_steps: int | None = None    # stop after this many optimizer steps (None: run all epochs)
    batch_size: int = 32            # examples per step (> 1: the KL estimate pairs each prompt with another response)
    weight_decay: float = 0.0       # AdamW decay on matrices (not biases, LayerNorms)
    warmup_fraction: float = 0.1    # share of steps with linear warm-up from 0; then linear decay to 0
    max_grad_norm: float = 1.0      # clip the global gradient norm to this
    seed: int = 0                   # seeds the order of the examples in every epoch
    eval_batch_size: int = 128      # responses per forward pass when computing log-probs without gradients


@dataclass
class KTOHistory:
    """What :func:`train_kto` records, one entry per step."""
    loss: list[float] = field(default_factory=list)                # KTO loss of each step's batch
    kl_estimate: list[float] = field(default_factory=list)         # the reference point z0 of each batch
    desirable_reward: list[float] = field(default_factory=list)    # mean beta * log pi/pi_ref of the desirable (nan: none)
    undesirable_reward: list[float] = field(default_factory=list)  # the same for the undesirable examples (nan: none)
    seconds: float = 0.0                                           # wall-clock time (reference pass included)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """A shuffled split of range(n) into batches of ``batch_size``; a last batch of one joins the one before it
    (alone, its KL pair would be its own response)."""
    batches = list(torch.randperm(n, generator=generator).split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches[-2:] = [torch.cat(batches[-2:])]
    return batches


def train_kto(policy: PreTrainedModel, ref_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              examples: Sequence[KTOExample | tuple[str, str, bool]], config: KTOConfig | None = None,
              progress: bool = True) -> KTOHistory:
    """Train ``policy`` in place with :func:`kto_loss` on unpaired examples; ``ref_model`` stays frozen.

    Each step takes ``batch_size`` examples in a shuffled order. The reference log-probs of the examples are
    computed once, up front. Per step, the KL estimate z0 comes from the batch's prompts paired with the
    batch's responses shifted by one (:func:`mismatched_responses`), under both models without gradients;
    then one forward pass of the policy with gradients scores the examples. AdamW, linear warm-up then linear
    decay, gradient clipping, dropout off (as :func:`rlhf_lab.dpo.train_dpo`). Raises FloatingPointError with
    the step number if the loss stops being finite. Returns a :class:`KTOHistory`.
    """
    from rlhf_lab.pretrain import make_optimizer  # AdamW, decay on matrices only (one copy, in pretrain.py)

    config = config or KTOConfig()
    examples = [KTOExample(*e) for e in examples]
    if len(examples) < 2:
        raise ValueError(f"train_kto needs at least two examples (the KL estimate pairs each prompt with another "
                         f"example's response), got {len(examples)}")
    if config.batch_size < 2:
        raise ValueError(f"batch_size must be at least 2 for the KL estimate, got {config.batch_size}")
    check_policy_and_reference(policy, ref_model)
    start = time.perf_counter()
    prompts = [e.prompt for e in examples]
    responses = [e.response for e in examples]
    rows = encode(tokenizer, prompts, responses)
    desirable = torch.tensor([bool(e.desirable) for e in examples])                    # (N,) bool
    ref_logps = sequence_logprobs(ref_model, rows, config.eval_batch_size)              # (N,) computed once

    generator = torch.Generator().manual_seed(config.seed)
    plan = [_batches(len(examples), config.batch_size, generator) for _ in range(config.epochs)]
    total = sum(len(epoch) for epoch in plan)
    if config.max_steps is not None:
        total = min(total, config.max_steps)
    optimizer = make_optimizer(policy, config)
    schedule = warmup_then_decay(optimizer, total, config.warmup_fraction)

    history = KTOHistory()
    if checkpointing_on(policy):
        disable_dropout(policy)   # checkpointing runs in train mode only; with dropout at 0 that changes nothing
    policy.eval()   # dropout off; gradients still flow
    bar = tqdm(total=total, desc="KTO", disable=not progress)
    steps = [(epoch, idx) for epoch, batches in enumerate(plan) for idx in batches][:total]
    for epoch, idx in steps:
        # z0: the batch's prompts with the batch's responses shifted by one, no gradients
        mismatched = encode(tokenizer, [prompts[i] for i in idx],
                            mismatched_responses([responses[i] for i in idx]))
        z0 = kl_estimate(sequence_logprobs(policy, mismatched, config.eval_batch_size),
                         sequence_logprobs(ref_model, mismatched, config.eval_batch_size))

        optimizer.zero_grad(set_to_none=True)
        with gradient_forward(policy):
            policy_logps = _logps(policy, rows, idx).cpu()                  # (b,) with gradients
        loss, desirable_r, undesirable_r = kto_loss(
            policy_logps, ref_logps[idx], desirable[idx], z0, config.beta,
            config.desirable_weight, config.undesirable_weight)
        if not torch.isfinite(loss):
            bar.close()
            raise FloatingPointError(
                f"KTO loss is {loss.item()} at step {len(history.loss) + 1} (epoch {epoch + 1}): training "
                f"diverged. Lower the learning rate (lr={config.lr}).")
        loss.backward()
        clipped_step(policy, optimizer, schedule, config.max_grad_norm)
        history.loss.append(loss.item())
        history.kl_estimate.append(z0.item())
        history.desirable_reward.append(desirable_r.mean().item() if len(desirable_r) else math.nan)
        history.undesirable_reward.append(undesirable_r.mean().item() if len(undesirable_r) else math.nan)
        tick(bar, history.loss, kl=history.kl_estimate[-1])
    bar.close()
    policy.eval()
    history.seconds = time.perf_counter() - start
    return history

"""Direct Preference Optimisation (DPO): RLHF's objective trained straight from preference pairs.

Rafailov et al. 2023, "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
(https://arxiv.org/abs/2305.18290). The KL-regularised objective of notebooks 01 and 05,

    maximise  E_{y ~ pi}[ r(x, y) ] - beta * KL( pi(.|x) || pi_ref(.|x) ),

has the closed-form optimum ``pi*(y|x) = pi_ref(y|x) exp(r(x, y) / beta) / Z(x)``. Solved for the reward,
``r(x, y) = beta * log pi*(y|x) / pi_ref(y|x) + beta * log Z(x)``. Put that into the Bradley-Terry
likelihood of the clicks and Z(x) cancels (both responses answer the same prompt): the policy itself
*is* a reward model, with the **implicit reward**

    r_hat(x, y) = beta * ( log pi(y|x) - log pi_ref(y|x) ),

and training it with the Bradley-Terry loss of notebook 03 (:func:`rlhf_lab.bradley_terry.bradley_terry_loss`)
trains the policy. No reward model, no sampling, no value function: one supervised loss on the pairs.

Other losses on the gap between the two implicit rewards make a family, chosen by ``loss_type`` as in TRL's
``DPOConfig``: DPO's ("sigmoid", conservative DPO with label smoothing), and in :data:`PAIR_LOSSES` robust DPO,
IPO and SLiC's hinge. KTO, which needs no pairs at all, is in ``kto.py``.

Training (:func:`train_dpo`) is the course's one pairwise trainer (``pairwise.train_pairwise``, the loop of the
reward model too) with the policy's log-ratio ``log pi(y|x) - log pi_ref(y|x)`` as each response's score and
:func:`logratio_loss` as the loss.

Shapes: B = pairs in a batch. Sequence log-probs ``log pi(y|x)`` are sums over response tokens
(``generation.sequence_logprob``), one number per response: (B,).
"""
from __future__ import annotations

import functools
import time
from dataclasses import dataclass, field
from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from transformers import PreTrainedModel, PreTrainedTokenizerBase

from rlhf_lab import world
from rlhf_lab.bradley_terry import bradley_terry_loss
from rlhf_lab.generation import Batch, encode, sequence_logprob
from rlhf_lab.models import checkpointing_on, disable_dropout, gradient_forward
from rlhf_lab.pairwise import Pairs, index_records, share_right, train_pairwise
from rlhf_lab.preferences import PreferenceRecord
from rlhf_lab.reward_model import accuracy


# ----------------------------------------------------------------------------- the loss family
# Every loss of the family reads the two log-ratios of a pair, log pi(y|x) - log pi_ref(y|x) of the chosen and of
# the rejected response, through their gap h = chosen_logratios - rejected_logratios, (B,).
# DPO's own loss ("sigmoid") is the Bradley-Terry loss of notebook 03 on the implicit rewards, and ``logratio_loss``
# calls ``bradley_terry_loss`` for it. Each entry of PAIR_LOSSES is another loss of one pair *when its label is
# right*, (B,) -> (B,); ``logratio_loss`` gets the loss of a swapped or tied label by swapping the two arguments.
# A new variant is one function and one line in PAIR_LOSSES (TRL's ``DPOTrainer`` switches on the same names).
def _robust_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
                 label_smoothing: float) -> torch.Tensor:
    # Robust DPO (Chowdhury et al. 2024, "Provably Robust DPO", Sec. 3, https://arxiv.org/abs/2403.00409):
    #   ( -(1 - eps) log sigmoid(beta h) + eps log sigmoid(-beta h) ) / (1 - 2 eps).
    # If each label is flipped with probability eps, its expectation over the flips is the clean DPO loss.
    x = beta * chosen_logratios - beta * rejected_logratios          # (B,) beta * h
    eps = label_smoothing
    return (-(1 - eps) * F.logsigmoid(x) + eps * F.logsigmoid(-x)) / (1 - 2 * eps)


def _ipo_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
              label_smoothing: float) -> torch.Tensor:
    # IPO (Azar et al. 2023, "A General Theoretical Paradigm to Understand Learning from Human Preferences",
    # Eq. 17, https://arxiv.org/abs/2310.12036; beta is the paper's tau): (h - 1 / (2 beta))^2.
    # A squared loss with a finite target gap, where DPO's loss keeps pushing h up on pairs it already gets right.
    return (chosen_logratios - rejected_logratios - 1 / (2 * beta)) ** 2


def _hinge_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
                label_smoothing: float) -> torch.Tensor:
    # SLiC's rank-calibration hinge (Zhao et al. 2023, "SLiC-HF", Eq. 1, https://arxiv.org/abs/2305.10425), on the
    # log-ratios and in TRL's scaling: relu(1 - beta h) = beta * relu(1/beta - h), zero once the gap reaches 1/beta.
    return torch.relu(1 - beta * (chosen_logratios - rejected_logratios))


#: ``loss_type`` -> the loss of one pair whose label is right; see the functions above for each paper's equation.
PAIR_LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor, float, float], torch.Tensor]] = {
    "robust": _robust_loss,
    "ipo": _ipo_loss,
    "hinge": _hinge_loss,
}
LOSS_TYPES = ("sigmoid", *PAIR_LOSSES)   # every loss_type dpo_loss takes
SMOOTHED_LOSSES = ("sigmoid", "robust")  # the loss types that read label_smoothing


def check_loss_type(loss_type: str, label_smoothing: float = 0.0) -> None:
    """Raise ValueError unless ``loss_type`` is one of :data:`LOSS_TYPES` and ``label_smoothing`` fits it."""
    if loss_type not in LOSS_TYPES:
        raise ValueError(f"unknown loss_type {loss_type!r}: use one of {list(LOSS_TYPES)}")
    if not 0.0 <= label_smoothing < 0.5:
        raise ValueError(f"label_smoothing is the probability that a label is flipped and must lie in [0, 0.5) "
                         f"(robust DPO divides by 1 - 2 * label_smoothing), got {label_smoothing}")
    if label_smoothing and loss_type not in SMOOTHED_LOSSES:
        raise ValueError(f"label_smoothing applies to loss_type {' and '.join(map(repr, SMOOTHED_LOSSES))} only; "
                         f"got label_smoothing={label_smoothing} with loss_type={loss_type!r}")


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float,
             targets: torch.Tensor | None = None, loss_type: str = "sigmoid",
             label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The DPO-family loss of a batch of preference pairs, and the implicit rewards of both sides.

    policy_chosen_logps:   log pi(y_w | x) of the chosen responses.          Shape: (B,)
    policy_rejected_logps: log pi(y_l | x) of the rejected responses.        Shape: (B,)
    ref_chosen_logps:      log pi_ref(y_w | x) under the frozen reference.   Shape: (B,)
    ref_rejected_logps:    log pi_ref(y_l | x).                              Shape: (B,)
    beta:                  KL strength of the objective DPO solves (> 0); also the scale of the rewards
                           (for "ipo" it is the paper's tau: the target gap is 1 / (2 beta)).
    targets:               optional (B,): 1 for an ordinary click, 0.5 for a tie (as in bradley_terry_loss).
    loss_type:             with h = (log pi(y_w) - log pi_ref(y_w)) - (log pi(y_l) - log pi_ref(y_l)), (B,):
                           "sigmoid"  DPO, Rafailov et al. 2023, Eq. 7: -log sigmoid(beta h); with label_smoothing
                                      eps, cDPO: -(1-eps) log sigmoid(beta h) - eps log sigmoid(-beta h)
                           "robust"   Chowdhury et al. 2024:
                                      (-(1-eps) log sigmoid(beta h) + eps log sigmoid(-beta h)) / (1 - 2 eps)
                           "ipo"      Azar et al. 2023, Eq. 17: (h - 1/(2 beta))^2
                           "hinge"    SLiC, Zhao et al. 2023: relu(1 - beta h)
    label_smoothing:       eps in [0, 0.5), the assumed probability that a label is flipped ("sigmoid" and "robust").

    Ties and label smoothing. With a target t the loss is ``t * loss(h) + (1 - t) * loss(-h)``: the label read
    either way round (loss(-h) is the loss of the pair with chosen and rejected swapped). For "sigmoid" that is
    the cross-entropy of ``bradley_terry_loss``, and with eps > 0 as well it is the cross-entropy with target
    ``eps + (1 - 2 eps) t``: an ordinary click is believed with probability 1 - eps, and a tie stays a tie (a
    flipped tie is a tie). For "robust" a tie gives the same loss as the tie of "sigmoid" for every eps; for
    "ipo" a tie has its minimum at h = 0.

    IPO and sequence length. Our log-probs are sequence sums (``generation.sequence_logprob``) and every loss
    type here reads the same h. TRL 1.16's ``DPOTrainer._compute_loss`` divides each response's log-ratio by its
    number of completion tokens for "ipo" (and only there; its comment says the IPO authors confirmed it), so its
    target gap 1/(2 beta) is per token. We keep Eq. 17 on sequence log-ratios: one h for the whole family, the
    implicit rewards of DPO unchanged, and the course's replies are a few dozen tokens at most. To get TRL's
    version, pass log-probs divided by the response lengths (tests/test_dpo_family.py checks that this equals TRL).

    Returns ``(loss, chosen_rewards, rejected_rewards)``: the scalar mean loss, and the implicit rewards
    ``beta * (log pi - log pi_ref)`` of the chosen and the rejected responses, (B,) each, detached.
    Raises ValueError for beta <= 0, an unknown loss_type, label_smoothing outside [0, 0.5) (or set for a
    loss type that does not read it), or inputs that are not all of shape (B,).
    """
    logps = (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)
    shapes = {tuple(t.shape) for t in logps}
    if len(shapes) != 1 or policy_chosen_logps.dim() != 1:
        raise ValueError(f"the four log-prob tensors must all have shape (B,), got shapes {sorted(shapes)}")
    chosen_logratios = policy_chosen_logps - ref_chosen_logps          # (B,) log pi(y_w|x) / pi_ref(y_w|x)
    rejected_logratios = policy_rejected_logps - ref_rejected_logps    # (B,) log pi(y_l|x) / pi_ref(y_l|x)
    return logratio_loss(chosen_logratios, rejected_logratios, beta, targets, loss_type, label_smoothing)


def logratio_loss(chosen_logratios: torch.Tensor, rejected_logratios: torch.Tensor, beta: float,
                  targets: torch.Tensor | None = None, loss_type: str = "sigmoid",
                  label_smoothing: float = 0.0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:func:`dpo_loss` given the two log-ratios instead of four log-probs (what :func:`train_dpo` scores).

    chosen_logratios:   log pi(y_w | x) - log pi_ref(y_w | x).   Shape: (B,)
    rejected_logratios: log pi(y_l | x) - log pi_ref(y_l | x).   Shape: (B,)
    beta, targets, loss_type, label_smoothing: as for :func:`dpo_loss`, which has the equations.
    Returns ``(loss, chosen_rewards, rejected_rewards)`` as :func:`dpo_loss` does. Raises ValueError for
    beta <= 0 or a loss_type / label_smoothing that :func:`check_loss_type` refuses.
    """
    if beta <= 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    check_loss_type(loss_type, label_smoothing)
    if loss_type == "sigmoid":
        # DPO (Eq. 7 of https://arxiv.org/abs/2305.18290):
        #   loss = -mean log sigmoid( beta * (chosen_logratios - rejected_logratios) )
        # i.e. the Bradley-Terry loss of the implicit rewards beta * log(pi / pi_ref). cDPO's label smoothing
        # (Mitchell 2023, https://ericmitchell.ai/cdpo.pdf) is a soft target: t -> eps + (1 - 2 eps) t.
        if label_smoothing > 0:
            t = torch.ones_like(chosen_logratios) if targets is None else targets.to(chosen_logratios.dtype)
            targets = label_smoothing + (1 - 2 * label_smoothing) * t                       # (B,)
        loss = bradley_terry_loss(beta * chosen_logratios, beta * rejected_logratios, targets=targets)  # scalar
    else:
        pair_loss = PAIR_LOSSES[loss_type]
        losses = pair_loss(chosen_logratios, rejected_logratios, beta, label_smoothing)          # (B,) label as given
        if targets is not None:                                        # t * loss(h) + (1 - t) * loss(-h)
            targets = targets.to(losses.dtype)
            swapped = pair_loss(rejected_logratios, chosen_logratios, beta, label_smoothing)     # (B,) label swapped
            losses = targets * losses + (1 - targets) * swapped
        loss = losses.mean()                                           # scalar
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
class PairData(Pairs):
    """Preference records as :func:`train_dpo` sees them: every distinct (prompt, response) encoded once.

    Comparison data often reuses responses: InstructGPT-style data (``reward_data.simulate_comparisons``)
    has k responses per prompt and all k(k-1)/2 pairs of them. Scoring each distinct response once and
    keeping a prompt's pairs in one batch makes all those pairs cost k forward passes (Ouyang et al. 2022, Sec. 3.5).
    ``chosen``, ``rejected``, ``targets`` and ``groups`` (one per prompt text) are those of ``pairwise.Pairs``.
    """
    rows: Batch                   # U rows: each distinct (prompt, response) once

    @classmethod
    def from_records(cls, tokenizer: PreTrainedTokenizerBase, records: Sequence[PreferenceRecord]) -> "PairData":
        """Encode the distinct (prompt, response) texts of ``records`` and group the records by prompt."""
        texts, pairs = index_records(records, group_by="prompt")
        rows = encode(tokenizer, [p for p, _ in texts], [y for _, y in texts])
        return cls(pairs.chosen, pairs.rejected, pairs.targets, pairs.groups, rows)


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
    loss_type: str = "sigmoid"    # the loss on the pairs, one of LOSS_TYPES: "sigmoid" (DPO), "robust", "ipo", "hinge"
    label_smoothing: float = 0.0  # assumed share of flipped labels, in [0, 0.5): cDPO ("sigmoid") or robust DPO ("robust")
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


def check_policy_and_reference(policy: PreTrainedModel, ref_model: PreTrainedModel) -> None:
    """Refuse a policy with nothing to train, or a reference that is the policy itself (DPO, KTO)."""
    if not any(p.requires_grad for p in policy.parameters()):
        raise ValueError("the policy has no trainable parameters (a frozen copy?): call "
                         "p.requires_grad_(True) on its parameters, or pass the model from models.load_policy")
    if policy is ref_model:
        raise ValueError("policy and ref_model are the same object: pass models.frozen_copy(policy) as ref_model")


def train_dpo(policy: PreTrainedModel, ref_model: PreTrainedModel, tokenizer: PreTrainedTokenizerBase,
              records: Sequence[PreferenceRecord], config: DPOConfig | None = None,
              val_records: Sequence[PreferenceRecord] | None = None, progress: bool = True) -> DPOHistory:
    """Train ``policy`` in place with :func:`dpo_loss` on preference records; ``ref_model`` stays frozen.

    The reference log-probs never change, so they are computed once, up front, without gradients. Each
    step takes the pairs of a few prompts (at least ``batch_size`` pairs, see :class:`PairData`) and needs one
    forward pass of the policy over their distinct responses; with all k(k-1)/2 pairs of k responses per
    prompt, that is k responses for k(k-1)/2 pairs. The loop is the course's pairwise trainer
    (``pairwise.train_pairwise``: AdamW, linear warm-up then linear decay, gradient clipping, micro-batches), with
    each response's log-ratio ``log pi(y|x) - log pi_ref(y|x)`` as its score and :func:`logratio_loss` as the loss.
    The policy runs with dropout off (eval mode, as TRL's ``disable_dropout``) so that log pi and log pi_ref
    compare like with like. Ties train towards equal implicit rewards (target 0.5). ``config.loss_type`` and
    ``config.label_smoothing`` choose the loss (:func:`dpo_loss`); the defaults are DPO's.

    Per step the history records the loss, the reward accuracy and margin on the batch, and
    ``kl_proxy``: 0.5 * (log pi(y|x) - log pi_ref(y|x))^2 averaged over the batch's responses, which is 0
    at the start and grows as the policy moves. It is measured on the *dataset's* responses, not on samples
    from the policy, so it is a proxy for drift, not the KL itself (``evaluation.kl_to_reference`` is).
    After each epoch the implicit-reward accuracy on ``val_records`` is measured (skipped when None/empty).
    Raises FloatingPointError with the step number if the loss stops being finite. Returns a :class:`DPOHistory`.
    """
    config = config or DPOConfig()
    if not records:
        raise ValueError("train_dpo needs at least one preference record")
    check_policy_and_reference(policy, ref_model)
    check_loss_type(config.loss_type, config.label_smoothing)   # before the reference pass, not at step 1
    start = time.perf_counter()
    data = PairData.from_records(tokenizer, records)
    ref_logps = sequence_logprobs(ref_model, data.rows, config.eval_batch_size)           # (U,) computed once
    val, val_ref = None, None
    val_records = [r for r in val_records or () if not r.tie]
    if val_records:
        val = PairData.from_records(tokenizer, val_records)
        val_ref = sequence_logprobs(ref_model, val.rows, config.eval_batch_size)

    def logratios(rows: torch.Tensor, sub: torch.Tensor) -> torch.Tensor:    # (len(sub),), with gradients
        with gradient_forward(policy):
            logps = _logps(policy, data.rows, rows[sub]).cpu()                 # log pi(y|x)
        return logps - ref_logps[rows[sub]]

    def loss(chosen: torch.Tensor, rejected: torch.Tensor, targets: torch.Tensor):
        return logratio_loss(chosen, rejected, config.beta, targets, config.loss_type, config.label_smoothing)

    def validate() -> float:
        val_logratios = sequence_logprobs(policy, val.rows, config.eval_batch_size) - val_ref
        return share_right(val_logratios[val.chosen] - val_logratios[val.rejected])

    history = DPOHistory()
    if checkpointing_on(policy):
        disable_dropout(policy)   # checkpointing runs in train mode only; with dropout at 0 that changes nothing
    policy.eval()   # dropout off; gradients still flow
    train_pairwise(policy, data, logratios, loss, config, history, functools.partial(_record, history),
                   validate if val is not None else None, max_steps=config.max_steps, name="DPO",
                   hint=f" or raise beta (beta={config.beta})", progress=progress)
    history.seconds = time.perf_counter() - start           # the reference passes included
    return history


def _record(history: DPOHistory, chosen_rewards: torch.Tensor, rejected_rewards: torch.Tensor,
            logratios: torch.Tensor) -> None:
    """Append one step's metrics (all but the loss) to ``history``; ``logratios`` (R,) are those of the
    batch's distinct responses."""
    history.reward_accuracy.append(share_right(chosen_rewards - rejected_rewards))
    history.reward_margin.append((chosen_rewards - rejected_rewards).mean().item())
    history.chosen_reward.append(chosen_rewards.mean().item())
    history.rejected_reward.append(rejected_rewards.mean().item())
    history.kl_proxy.append((0.5 * logratios.pow(2)).mean().item())

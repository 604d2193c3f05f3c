"""Policy-gradient RLHF on a language model: KL-shaped rewards, REINFORCE, RLOO, GRPO and PPO.

One home for each piece; every function says its tensor shapes and the equation it follows.
Shapes: B = responses in the batch, T = response tokens; ``mask`` (B, T) is 1 on real response
tokens (including EOS) and 0 on padding. Responses to the same prompt sit next to each other:
with k samples per prompt, rows ``[i*k, (i+1)*k)`` share prompt i.

The objective (Ziegler et al. 2019, Eq. 2; Ouyang et al. 2022, Eq. 2):

    maximise  E_{x, y ~ pi}[ r(x, y) ] - beta * KL( pi(.|x) || pi_ref(.|x) )

estimated from samples as a per-token reward: -beta * (log pi(y_t) - log pi_ref(y_t)) on every
token, plus the reward model's score on the last token (the InstructGPT / TRL form). GRPO instead keeps the
score as the reward and adds beta times a per-token KL estimate to the loss (DeepSeekMath).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from rlhf_lab.accumulation import backward_in_micro_batches, forward_in_micro_batches
from rlhf_lab.generation import MAX_NEW_TOKENS


# ------------------------------------------------------------------------------------ helpers
def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Mean of ``x`` over the entries where ``mask`` is 1 (over all entries, or along ``dim``)."""
    mask = mask.to(x.dtype)
    if dim is None:
        return (x * mask).sum() / mask.sum().clamp(min=1)
    return (x * mask).sum(dim) / mask.sum(dim).clamp(min=1)


def whiten(x: torch.Tensor, mask: torch.Tensor | None = None, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """Normalise ``x`` to unit variance (and zero mean unless ``shift_mean=False``) over masked entries."""
    if mask is None:
        mask = torch.ones_like(x)
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return out * mask.to(x.dtype)


# ------------------------------------------------------------------------ KL-shaped rewards
def kl_shaped_rewards(scores: torch.Tensor, logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
                      mask: torch.Tensor, beta: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -beta * (log pi - log pi_ref) on each token, plus the score on the last one.

    Ziegler et al. 2019 (https://arxiv.org/abs/1909.08593), Eq. 2, token by token as in TRL's PPO.
    The per-token term ``log pi(y_t) - log pi_ref(y_t)`` (the "k1" estimator) is an unbiased sample estimate
    of the KL, and its sum over the response estimates KL(pi || pi_ref) for that prompt.

    Args:
        scores: (B,) reward-model score of each whole response.
        logprobs, ref_logprobs: (B, T) per-token log-probs under the policy and the reference.
        mask: (B, T) 1 on real response tokens.
        beta: the KL weight, >= 0 (TRL's ``beta``).
    Returns:
        rewards (B, T) and kl (B, T), both 0 on padding. ``rewards.sum(1) = scores - beta * kl.sum(1)``.
    """
    mask = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * mask
    rewards = -beta * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)                      # index of each response's last token
    has_tokens = mask.sum(1) > 0
    rewards[torch.arange(len(scores))[has_tokens], last[has_tokens]] += scores[has_tokens].to(rewards.dtype)
    return rewards, kl


def k3_kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor) -> torch.Tensor:
    """Per-token "k3" estimate of KL(pi || pi_ref): exp(d) - d - 1 with d = log pi_ref - log pi (Schulman 2020).

    Always >= 0, unbiased for samples from pi, lower variance than k1 when pi is near pi_ref; the KL term of
    GRPO's loss (Shao et al. 2024, DeepSeekMath, Eq. 4) and of TRL's ``GRPOTrainer``. (B, T) -> (B, T).
    """
    d = ref_logprobs - logprobs
    return torch.exp(d) - d - 1.0


class AdaptiveKLController:
    """Move beta so the KL per response approaches a target (Ziegler et al. 2019, Section 2.2, Eq. 4).

    e = clip(KL / target - 1, -0.2, 0.2);   beta <- beta * (1 + e * n / horizon)

    ``n`` is the number of samples in the batch just seen and ``horizon`` is in samples, as in Ziegler et
    al.'s code and TRL: a sustained error of +-20 % moves beta by a factor of about exp(+-0.2 * N / horizon)
    over N samples. They use a horizon of 10,000 for runs of about a million samples; the course's runs see
    about 2,000 samples, so ``PGConfig.kl_horizon`` defaults to 500 (beta can double or halve within a run).
    """

    def __init__(self, init_beta: float, target: float, horizon: int = 500) -> None:
        if target <= 0 or horizon <= 0:
            raise ValueError(f"target and horizon must be > 0, got target={target}, horizon={horizon}")
        self.value, self.target, self.horizon = init_beta, target, horizon

    def update(self, current_kl: float, n_samples: int) -> float:
        """Update beta after a batch of ``n_samples`` whose KL per response was ``current_kl``; return it."""
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_samples / self.horizon
        return self.value


# ------------------------------------------------------------------------------ baselines
def mean_baseline_advantages(returns: torch.Tensor) -> torch.Tensor:
    """REINFORCE with the batch-mean baseline: A_i = R_i - mean(R).  Shapes: (B,) -> (B,)."""
    return returns - returns.mean()


def rloo_advantages(returns: torch.Tensor, k: int) -> torch.Tensor:
    """REINFORCE Leave-One-Out (Kool et al. 2019; Ahmadian et al. 2024, Eq. 5).

    With k samples per prompt, each sample's baseline is the mean return of the OTHER k-1 samples
    of the same prompt: A_i = R_i - 1/(k-1) * sum_{j != i} R_j = k/(k-1) * (R_i - mean_group(R)).

    Args: returns (B,) with B = n_prompts * k, grouped by prompt. Returns: (B,).
    """
    if k < 2:
        raise ValueError(f"RLOO needs k >= 2 samples per prompt, got k={k}")
    if returns.numel() % k:
        raise ValueError(f"batch of {returns.numel()} returns is not a multiple of k={k}")
    grouped = returns.view(-1, k)
    baseline = (grouped.sum(1, keepdim=True) - grouped) / (k - 1)
    return (grouped - baseline).view(-1)


def grpo_advantages(scores: torch.Tensor, k: int, scale: bool = True, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-relative advantage (Shao et al. 2024, DeepSeekMath, Section 4.1.2).

    A_i = (r_i - mean_group(r)) / (std_group(r) + eps), computed from the reward-model scores alone (GRPO
    puts the KL in the loss, not in the reward). ``scale=False`` drops the division, as Dr. GRPO
    (Liu et al. 2025) and TRL's ``scale_rewards=False`` do: a group whose scores barely differ is then not
    blown up to unit size. Shapes: (B,) -> (B,), B = n_prompts * k. (``std`` is the unbiased one, as TRL's.)
    """
    if k < 2:
        raise ValueError(f"GRPO needs k >= 2 samples per prompt, got k={k}")
    if scores.numel() % k:
        raise ValueError(f"batch of {scores.numel()} scores is not a multiple of k={k}")
    grouped = scores.view(-1, k)
    centred = grouped - grouped.mean(1, keepdim=True)
    if scale:
        centred = centred / (grouped.std(1, keepdim=True) + eps)
    return centred.view(-1)


LOSS_TYPES = ("grpo", "dr_grpo", "dapo")


def aggregate_token_loss(per_token: torch.Tensor, mask: torch.Tensor, loss_type: str = "grpo",
                         max_completion_length: int | None = None) -> torch.Tensor:
    """Average a per-token loss (B, T) into one number, in one of TRL's three ways (``GRPOConfig.loss_type``).

    - ``"grpo"``: mean over each response's tokens, then over responses (DeepSeekMath Eq. 3: 1/G sum_i 1/|o_i| sum_t).
      A token of a short reply weighs more than a token of a long one.
    - ``"dr_grpo"``: sum over all tokens / (B * max_completion_length) (Liu et al. 2025): a constant normaliser,
      so no length bias.
    - ``"dapo"``: sum over all tokens / number of tokens in the batch (Yu et al. 2025): every token weighs the same.
    """
    mask = mask.to(per_token.dtype)
    if loss_type == "grpo":
        return ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()
    if loss_type == "dr_grpo":
        length = max_completion_length if max_completion_length is not None else per_token.shape[1]
        return (per_token * mask).sum() / (per_token.shape[0] * length)
    if loss_type == "dapo":
        return (per_token * mask).sum() / mask.sum().clamp(min=1)
    raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {loss_type!r}")


def clipped_surrogate_loss(ratio: torch.Tensor, advantages: torch.Tensor, clip_range: float
                           ) -> tuple[torch.Tensor, torch.Tensor]:
    """PPO's clipped surrogate per token, as a loss (Schulman et al. 2017, Eq. 7), shared by PPO and GRPO.

    ``-min(ratio * A, clip(ratio, 1 - eps, 1 + eps) * A)`` for each token, and a bool tensor saying where the
    clipped term is the active one (it then sends no gradient). ``ratio`` (B, T); ``advantages`` broadcasts to it.
    """
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    return torch.maximum(unclipped, clipped), (clipped > unclipped).detach()


def grpo_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, ref_logprobs: torch.Tensor,
              advantages: torch.Tensor, mask: torch.Tensor, beta: float, clip_range: float = 0.2,
              loss_type: str = "grpo", max_completion_length: int | None = None
              ) -> tuple[torch.Tensor, dict[str, float]]:
    """GRPO's loss (Shao et al. 2024, DeepSeekMath, Eq. 3), per token, aggregated by ``loss_type``.

    per token:  -min(ratio_t * A_i, clip(ratio_t, 1 - eps, 1 + eps) * A_i) + beta * k3_t,
    ratio_t = pi(y_t) / pi_old(y_t), k3_t = :func:`k3_kl` against the reference. With one update per batch
    (TRL's ``num_iterations=1``) pi_old is the policy itself, detached: the ratio is 1 and the clip is
    inactive, but its gradient is the policy gradient.
    Args: logprobs (B, T) with grad; old_logprobs, ref_logprobs, mask (B, T); advantages (B,), one per response.
    Returns the loss and stats: ``kl`` (mean k3 per token) and ``clipfrac``.
    """
    ratio = torch.exp(logprobs - old_logprobs)
    surrogate_loss, clipped = clipped_surrogate_loss(ratio, advantages.view(-1, 1).to(logprobs.dtype), clip_range)
    kl = k3_kl(logprobs, ref_logprobs)
    loss = aggregate_token_loss(surrogate_loss + beta * kl, mask, loss_type, max_completion_length)
    stats = {"k3_kl": masked_mean(kl.detach(), mask).item(), "clipfrac": masked_mean(clipped.float(), mask).item()}
    return loss, stats


# ------------------------------------------------------------------------------------ PPO
def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0,
        lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised Advantage Estimation (Schulman et al. 2016, https://arxiv.org/abs/1506.02438, Eq. 16).

    delta_t = r_t + gamma * V_{t+1} - V_t,   A_t = sum_l (gamma * lam)^l delta_{t+l},
    with V = 0 after the last real token. Returns advantages (B, T) and returns A + V (B, T), 0 on padding.
    """
    mask = mask.to(values.dtype)
    values = values * mask
    T = rewards.shape[1]
    advantages = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(T)):
        next_value = values[:, t + 1] if t + 1 < T else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        last = delta + gamma * lam * last * (mask[:, t + 1] if t + 1 < T else 0.0)
        advantages[:, t] = last * mask[:, t]
    return advantages, (advantages + values) * mask


def ppo_policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip_range: float = 0.2) -> tuple[torch.Tensor, dict[str, float]]:
    """PPO's clipped surrogate (Schulman et al. 2017, https://arxiv.org/abs/1707.06347, Eq. 7), as a loss.

    ratio = exp(log pi - log pi_old);  L = -min(ratio * A, clip(ratio, 1-eps, 1+eps) * A), averaged over tokens.
    Args: logprobs (B, T) with grad; old_logprobs, advantages, mask (B, T). Returns the loss and stats:
    ``clipfrac`` (share of tokens where the clipped term was the active one) and ``approx_kl``
    (mean of 0.5 * (log ratio)^2, a low-variance estimate of KL(pi_old || pi)).
    """
    log_ratio = (logprobs - old_logprobs) * mask
    per_token, clipped = clipped_surrogate_loss(torch.exp(log_ratio), advantages, clip_range)
    loss = masked_mean(per_token, mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean(clipped.float(), mask).item(),
                 "approx_kl": masked_mean(0.5 * log_ratio ** 2, mask).item()}
    return loss, stats


def ppo_value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
                   clip_range_value: float = 0.2) -> torch.Tensor:
    """Clipped value loss of PPO as in OpenAI baselines / TRL: 0.5 * max((V - R)^2, (V_clipped - R)^2).

    V_clipped = old_V + clip(V - old_V, -c, c). All inputs (B, T); returns a scalar.
    """
    clipped = old_values + torch.clamp(values - old_values, -clip_range_value, clip_range_value)
    return 0.5 * masked_mean(torch.maximum((values - returns) ** 2, (clipped - returns) ** 2), mask)


# ------------------------------------------------------------------------------ value head
class ValueHead(torch.nn.Module):
    """A scalar value V(state) on the policy's last hidden state (the shared-trunk design of TRL's
    ``AutoModelForCausalLMWithValueHead`` and of InstructGPT's PPO)."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.dropout = torch.nn.Dropout(0.0)
        self.summary = torch.nn.Linear(hidden_size, 1)
        torch.nn.init.zeros_(self.summary.weight)
        torch.nn.init.zeros_(self.summary.bias)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, L, H) -> values (B, L)."""
        return self.summary(self.dropout(hidden)).squeeze(-1)


def logprobs_and_values(policy, value_head: ValueHead | None, batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per-token log-probs (B, T) of ``batch``'s responses under ``policy`` and, with a value head, values (B, T).

    One forward pass. ``values[:, t]`` is V of the state *before* response token t (prompt plus y_<t),
    read off the hidden state at the same column whose logits predict y_t.
    """
    from rlhf_lab.generation import position_ids_from_mask, token_logprobs

    input_ids = torch.cat([batch.prompt_ids, batch.response_ids], dim=1)
    attention_mask = torch.cat([batch.prompt_mask, batch.response_mask], dim=1)
    out = policy(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids_from_mask(attention_mask),
                 use_cache=False, output_hidden_states=value_head is not None)
    P, T = batch.prompt_ids.shape[1], batch.response_ids.shape[1]
    mask = batch.response_mask.to(torch.float32)
    logprobs = token_logprobs(out.logits[:, P - 1:P - 1 + T], batch.response_ids) * mask
    values = None
    if value_head is not None:
        values = value_head(out.hidden_states[-1][:, P - 1:P - 1 + T].float()) * mask
    return logprobs, values


# ---------------------------------------------------------------------------- scoring
def score_responses(reward_fn, prompts: list[str], texts: list[str], ended: torch.Tensor,
                    missing_eos_penalty: float | None) -> torch.Tensor:
    """Scores (B,) of sampled replies: the reward model's where a reply ended, ``-missing_eos_penalty`` where not.

    A reply that hit ``max_new_tokens`` without end-of-sequence is never shown to the reward model
    (which would read it as if it had ended): it gets the fixed score ``-missing_eos_penalty`` instead,
    so the policy learns to finish its replies. TRL has the same option (``missing_eos_penalty``),
    there subtracted from the reward model's score. ``None`` turns it off: every reply is scored.
    ``ended``: (B,) bool (``Samples.ended``).
    """
    ended = torch.as_tensor(ended, dtype=torch.bool).cpu()
    scores = torch.full((len(texts),), -(missing_eos_penalty or 0.0), dtype=torch.float32)
    keep = ended.nonzero().flatten().tolist() if missing_eos_penalty is not None else list(range(len(texts)))
    if keep:
        scores[keep] = torch.as_tensor(reward_fn([prompts[i] for i in keep], [texts[i] for i in keep]),
                                       dtype=torch.float32).cpu().view(-1)
    return scores


# ---------------------------------------------------------------------------- training loop
ALGORITHMS = ("reinforce", "rloo", "grpo", "ppo")


@dataclass
class PGConfig:
    """Settings of one policy-gradient RLHF run. The defaults train every parameter at 1.5e-4, a step the tiny
    policy takes without garbling its sentences; notebooks 05 and 06 take the tiny preset's (``models.preset``):
    every method with ``num_layers_unfrozen=2``, RLOO, REINFORCE and GRPO at ``lr=6e-4``, PPO at ``lr=3e-4``."""
    algorithm: str = "rloo"          # "reinforce" (mean baseline), "rloo", "grpo" or "ppo"
    steps: int = 30                  # policy updates, each on a fresh batch of samples
    prompts_per_step: int = 16       # distinct prompts per batch
    samples_per_prompt: int = 4      # k responses per prompt (RLOO and GRPO baselines need k >= 2)
    lr: float = 1.5e-4               # AdamW learning rate of the policy (and value head); larger garbles the tiny
                                     # policy unless its lower layers are frozen (num_layers_unfrozen)
    beta: float = 0.1                # weight of the KL penalty to the reference (TRL's name)
    target_kl: float | None = None   # if set, adapt beta so the KL per response approaches this (nats)
    kl_horizon: int = 500            # adaptive KL: horizon in samples (Ziegler et al. 2019: 10,000)
    max_new_tokens: int = MAX_NEW_TOKENS  # response length cap when sampling
    missing_eos_penalty: float | None = 4.0  # a reply with no EOS scores -this instead of the reward model's score
    max_grad_norm: float = 1.0       # clip the global gradient norm to this
    num_layers_unfrozen: int | None = None  # train only the top N transformer blocks (+ final norm); embeddings and
                                     # lower blocks stay the reference's (models.freeze_bottom_layers). None: all
    loss_type: str = "grpo"          # GRPO: token aggregation, "grpo", "dr_grpo" or "dapo" (as TRL's GRPOConfig)
    scale_rewards: bool = True       # GRPO: divide the group-centred scores by their std (False: Dr. GRPO)
    ppo_epochs: int = 4              # PPO: passes over each batch
    minibatches: int = 2             # PPO: minibatches per pass
    clip_range: float = 0.2          # PPO and GRPO: epsilon of the clipped ratio
    clip_range_value: float = 0.2    # PPO: clipping of the value update
    vf_coef: float = 0.1             # PPO: weight of the value loss
    gamma: float = 1.0               # PPO: discount (1: the whole response counts)
    lam: float = 0.95                # PPO: GAE lambda
    stop_kl: float = 0.05            # PPO: stop a batch's epochs early when approx KL(old||new) exceeds this
    micro_batch_size: int | None = None  # responses per forward pass (None: the whole batch); same gradient, less
                                     # memory (accumulation.py); RLOO/GRPO/REINFORCE: a multiple of samples_per_prompt
    seed: int = 0                    # seeds prompt order, sampling and PPO's minibatch order

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.algorithm in ("rloo", "grpo") and self.samples_per_prompt < 2:
            raise ValueError(f"{self.algorithm} needs samples_per_prompt >= 2, got {self.samples_per_prompt}")
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")
        if self.loss_type not in LOSS_TYPES:
            raise ValueError(f"loss_type must be one of {LOSS_TYPES}, got {self.loss_type!r}")
        if self.target_kl is not None and self.target_kl <= 0:
            raise ValueError(f"target_kl must be > 0 or None, got {self.target_kl}")
        if self.micro_batch_size is not None:
            if self.micro_batch_size < 1:
                raise ValueError(f"micro_batch_size must be >= 1 or None, got {self.micro_batch_size}")
            if self.algorithm != "ppo" and self.micro_batch_size % self.samples_per_prompt:
                raise ValueError(f"micro_batch_size ({self.micro_batch_size}) must be a multiple of samples_per_prompt "
                                 f"({self.samples_per_prompt}): a prompt's responses share one forward pass")
        if self.num_layers_unfrozen is not None and self.num_layers_unfrozen < 0:
            raise ValueError(f"num_layers_unfrozen must be >= 0 or None, got {self.num_layers_unfrozen}")
        if self.missing_eos_penalty is not None and self.missing_eos_penalty < 0:
            raise ValueError(f"missing_eos_penalty must be >= 0 or None, got {self.missing_eos_penalty}")


def train(policy, ref_model, tokenizer, reward_fn, prompts: list[str], config: PGConfig = PGConfig(),
          gold_fn=None, progress: bool = True) -> list[dict]:
    """Fine-tune ``policy`` in place with KL-regularised policy gradient; return one log row per step.

    Args:
        policy: a causal LM (``PreTrainedModel``) to train.
        ref_model: the frozen reference (``models.frozen_copy(policy)`` before training).
        tokenizer: their tokenizer.
        reward_fn: ``reward_fn(prompts, responses) -> (B,) tensor``, the proxy reward the policy maximises
            (the learned reward model, or the gold reward itself).
        prompts: prompt texts to draw from.
        gold_fn: optional ``(prompts, responses, ended=...) -> (B,)`` logged beside the proxy (never trained
            on), e.g. ``evaluation.gold_reward_fn``; ``ended`` is ``Samples.ended`` as a list of bools.
    Each row holds: step, proxy_reward (the scores trained on, missing-EOS penalties included), gold_reward,
    kl (k1 estimate, nats per response, of the policy that sampled the batch), beta (the weight used this step),
    entropy (nats per token, sample estimate), length (tokens), ended (share of replies with EOS), loss, seconds,
    time (seconds per phase: sample, reference, reward, update = forward + backward + optimiser, other = logging
    and the gold reward);
    REINFORCE, RLOO and GRPO add grad_norm (before clipping); with ``samples_per_prompt`` > 1, flat_groups is the
    share of prompts whose samples all scored the same (their group-relative advantages are all 0);
    PPO adds clipfrac, value_loss, approx_kl, epochs; GRPO adds k3_kl (per token) and clipfrac.

    REINFORCE and RLOO put the KL in the reward (:func:`kl_shaped_rewards`) and take one step on
    ``-mean(A * log pi(y|x))`` (:func:`reinforce_loss`); GRPO puts it in the loss (:func:`grpo_loss`); PPO runs
    :func:`ppo_update` on the KL-shaped per-token rewards. Stops with ``FloatingPointError`` naming the step on a
    NaN or infinite loss. With ``num_layers_unfrozen`` set, the policy's embeddings and lower blocks are frozen
    first (:func:`models.freeze_bottom_layers`, in place) and only the parameters left trainable are optimised.
    """
    import random
    import time

    from tqdm.auto import tqdm

    from rlhf_lab import models
    from rlhf_lab.generation import SampleConfig, response_logprobs, sample

    cfg = config
    if models.checkpointing_on(policy):
        models.disable_dropout(policy)     # then train mode (where checkpointing runs) = eval mode
    k = cfg.samples_per_prompt
    rng = random.Random(cfg.seed)
    generator = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    minibatch_generator = torch.Generator().manual_seed(cfg.seed + 7)   # PPO's minibatch order, new every epoch
    value_head = ValueHead(policy.config.hidden_size).to(policy.device) if cfg.algorithm == "ppo" else None
    if cfg.num_layers_unfrozen is not None:
        models.freeze_bottom_layers(policy, cfg.num_layers_unfrozen)
    params = ([p for p in policy.parameters() if p.requires_grad]
              + (list(value_head.parameters()) if value_head is not None else []))
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    kl_ctl = AdaptiveKLController(cfg.beta, cfg.target_kl, cfg.kl_horizon) if cfg.target_kl else None
    beta = cfg.beta
    sample_cfg = SampleConfig(max_new_tokens=cfg.max_new_tokens, temperature=1.0)
    history: list[dict] = []
    policy.eval()  # RL trains with dropout off, so sampling, old and new log-probs agree
    bar = tqdm(range(cfg.steps), desc=cfg.algorithm, disable=not progress)
    for step in bar:
        start = time.perf_counter()
        batch_prompts = [p for p in rng.sample(prompts, cfg.prompts_per_step) for _ in range(k)]
        samples = sample(policy, tokenizer, batch_prompts, sample_cfg, generator)
        t_sample = time.perf_counter()
        mask = samples.response_mask.to(torch.float32)
        with torch.no_grad():
            shared = k if cfg.micro_batch_size is None or cfg.micro_batch_size % k == 0 else 1   # prefix sharing
            ref_logprobs = forward_in_micro_batches(lambda idx: response_logprobs(
                ref_model, *_rows(samples, idx), group=shared), len(samples), cfg.micro_batch_size)
            t_reference = time.perf_counter()
            scores = score_responses(reward_fn, batch_prompts, samples.texts, samples.ended, cfg.missing_eos_penalty)
            t_reward = time.perf_counter()
            in_reward = 0.0 if cfg.algorithm == "grpo" else beta      # GRPO's KL is a loss term instead
            rewards, kl = kl_shaped_rewards(scores.to(mask.device), samples.logprobs, ref_logprobs, mask, in_reward)
        row = {"step": step, "proxy_reward": scores.mean().item(), "kl": kl.sum(1).mean().item(),
               "beta": beta, "entropy": (-masked_mean(samples.logprobs, mask)).item(),
               "length": mask.sum(1).mean().item(), "ended": samples.ended.float().mean().item()}
        if k > 1:     # groups whose k scores are all the same: no signal for a group baseline (RLOO, GRPO)
            grouped = scores.view(-1, k)
            row["flat_groups"] = (grouped == grouped[:, :1]).all(1).float().mean().item()
        if gold_fn is not None:
            gold = gold_fn(batch_prompts, samples.texts, ended=samples.ended.tolist())
            row["gold_reward"] = float(torch.as_tensor(gold, dtype=torch.float32).mean())
        t_update = time.perf_counter()
        if cfg.algorithm == "ppo":
            row.update(ppo_update(policy, value_head, optimizer, samples, rewards, cfg, minibatch_generator, step))
        else:
            if cfg.algorithm == "grpo":
                adv = grpo_advantages(scores.to(mask.device), k, scale=cfg.scale_rewards)

                def loss_fn(logprobs):                                # (B, T), with gradients
                    return grpo_loss(logprobs, logprobs.detach(), ref_logprobs, adv, mask, beta,
                                     cfg.clip_range, cfg.loss_type, cfg.max_new_tokens)
            else:
                returns = rewards.sum(1)                              # score - beta * KL, per response
                adv = mean_baseline_advantages(returns) if cfg.algorithm == "reinforce" else rloo_advantages(returns, k)

                def loss_fn(logprobs):
                    return reinforce_loss(logprobs, adv), {}
            optimizer.zero_grad(set_to_none=True)
            def forward(idx):                                         # with gradients: (len(idx), T)
                with models.gradient_forward(policy):                 # a checkpointed policy keeps no KV cache
                    return response_logprobs(policy, *_rows(samples, idx), group=1 if policy.training else k)

            loss, _, stats = backward_in_micro_batches(forward, len(samples), loss_fn, cfg.micro_batch_size,
                                                       check=lambda loss: check_loss(loss, step))
            row["grad_norm"] = apply_gradients(optimizer, params, cfg.max_grad_norm)
            row.update(stats)
            row["loss"] = loss.item()
        if kl_ctl is not None:
            beta = kl_ctl.update(row["kl"], len(samples))
        end = time.perf_counter()
        row["seconds"] = end - start
        row["time"] = {"sample": t_sample - start, "reference": t_reference - t_sample, "reward": t_reward - t_reference,
                       "update": end - t_update, "other": t_update - t_reward}   # seconds per phase (profile)
        history.append(row)
        bar.set_postfix(reward=f"{row['proxy_reward']:.2f}", kl=f"{row['kl']:.2f}")
    return history


def reinforce_loss(logprobs: torch.Tensor, advantages: torch.Tensor) -> torch.Tensor:
    """REINFORCE's loss, -mean_i[A_i * log pi(y_i | x_i)] (Williams 1992; notebook 01), whose gradient is the
    policy-gradient estimate. ``logprobs`` (B, T) per token, 0 on padding (summed per response: a sequence-level
    loss, no length normalisation); ``advantages`` (B,), detached here."""
    return -(advantages.detach() * logprobs.sum(1)).mean()


def optimizer_step(loss: torch.Tensor, optimizer, params, max_grad_norm: float, step: int) -> None:
    """backward, clip the global gradient norm to ``max_grad_norm``, step. A NaN or infinite loss stops
    training with ``FloatingPointError`` naming the training ``step``."""
    check_loss(loss, step)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    apply_gradients(optimizer, params, max_grad_norm)


def check_loss(loss: torch.Tensor, step: int) -> None:
    """Stop with ``FloatingPointError`` naming the training ``step`` if ``loss`` is NaN or infinite."""
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {step}: the loss is {loss.item()}; training stopped. "
                                 "Lower the learning rate, or raise beta, and run again.")


def apply_gradients(optimizer, params, max_grad_norm: float) -> float:
    """Clip the global norm of the accumulated gradients to ``max_grad_norm``, then take the optimiser step.
    Returns the norm before clipping."""
    norm = torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()
    return float(norm)


def ppo_update(policy, value_head: ValueHead, optimizer, samples, rewards: torch.Tensor, config: PGConfig,
               generator: torch.Generator | None = None, step: int = 0) -> dict:
    """PPO's update on one batch (Schulman et al. 2017; Ziegler et al. 2019; TRL's PPO before 1.x).

    1. One no-grad forward pass gives pi_old's log-probs and the old values (B, T); GAE (:func:`gae`) turns the
       per-token ``rewards`` (B, T, from :func:`kl_shaped_rewards`) into advantages and returns; advantages
       are whitened over the batch.
    2. ``ppo_epochs`` passes; each pass shuffles the batch anew (``generator``) into ``minibatches`` parts and
       takes one optimiser step per part on :func:`ppo_policy_loss` + ``vf_coef`` * :func:`ppo_value_loss`.
    3. After a pass whose mean approximate KL(old || new) exceeds ``stop_kl``, the remaining passes are skipped.
    Returns the means over minibatches of loss, value_loss, clipfrac, approx_kl, and the passes run (``epochs``).
    """
    from rlhf_lab.models import gradient_forward

    cfg = config
    mask = samples.response_mask.to(torch.float32)
    params = [p for group in optimizer.param_groups for p in group["params"]]
    with torch.no_grad():
        old_logprobs, old_values = forward_in_micro_batches(
            lambda idx: logprobs_and_values(policy, value_head, minibatch(samples, idx)), len(samples),
            cfg.micro_batch_size)
        advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask)
    B = len(samples)
    size = max(1, B // cfg.minibatches)
    stats = {"loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0, "approx_kl": 0.0}
    n, epochs = 0, 0
    for _ in range(cfg.ppo_epochs):
        epochs += 1
        epoch_kl = []
        for idx in torch.randperm(B, generator=generator).split(size):
            def loss_fn(outputs, idx=idx):
                logprobs, values = outputs                            # (b, T) each, with gradients
                pg_loss, s = ppo_policy_loss(logprobs, old_logprobs[idx], advantages[idx], mask[idx], cfg.clip_range)
                v_loss = ppo_value_loss(values, old_values[idx], returns[idx], mask[idx], cfg.clip_range_value)
                return pg_loss + cfg.vf_coef * v_loss, (v_loss.item(), s)

            optimizer.zero_grad(set_to_none=True)
            def forward(sub, idx=idx):
                with gradient_forward(policy):
                    return logprobs_and_values(policy, value_head, minibatch(samples, idx[sub]))

            loss, _, (v_loss, s) = backward_in_micro_batches(forward, len(idx), loss_fn, cfg.micro_batch_size,
                                                             check=lambda loss: check_loss(loss, step))
            apply_gradients(optimizer, params, cfg.max_grad_norm)
            stats["loss"] += loss.item(); stats["value_loss"] += v_loss
            stats["clipfrac"] += s["clipfrac"]; stats["approx_kl"] += s["approx_kl"]
            n += 1
            epoch_kl.append(s["approx_kl"])
        if sum(epoch_kl) / len(epoch_kl) > cfg.stop_kl:
            break
    return {key: value / max(n, 1) for key, value in stats.items()} | {"epochs": epochs}


def _rows(batch, idx: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """prompt_ids, prompt_mask, response_ids, response_mask of the rows ``idx`` (what response_logprobs takes)."""
    return batch.prompt_ids[idx], batch.prompt_mask[idx], batch.response_ids[idx], batch.response_mask[idx]


def minibatch(batch, idx: torch.Tensor):
    """The rows ``idx`` (a 1-d index tensor) of a batch of samples, as a ``generation.Batch`` (the tensors
    :func:`logprobs_and_values` needs)."""
    from rlhf_lab.generation import Batch
    return Batch(batch.prompt_ids[idx], batch.prompt_mask[idx], batch.response_ids[idx], batch.response_mask[idx])

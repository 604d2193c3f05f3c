"""Policy-gradient RLHF on a language model: KL-shaped rewards, REINFORCE, RLOO, GRPO and PPO.

One home for each piece; every function says its tensor shapes and the equation it follows.
Shapes: B = responses in the batch, T = response tokens; ``mask`` (B, T) is 1 on real response
tokens (including EOS) and 0 on padding. Responses to the same prompt sit next to each other:
with k samples per prompt, rows ``[i*k, (i+1)*k)`` share prompt i.

The objective (Ziegler et al. 2019, Eq. 2; Ouyang et al. 2022, Eq. 2):

    maximise  E_{x, y ~ pi}[ r(x, y) ] - beta * KL( pi(.|x) || pi_ref(.|x) )

estimated from samples as a per-token reward: -beta * (log pi(y_t) - log pi_ref(y_t)) on every
token, plus the reward model's score on the last token (the InstructGPT / TRL form).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

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
                      mask: torch.Tensor, kl_coef: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token rewards: -kl_coef * (log pi - log pi_ref) on each token, plus the score on the last one.

    Ziegler et al. 2019 (https://arxiv.org/abs/1909.08593), Eq. 2, token by token as in TRL's PPO.
    The per-token term ``log pi(y_t) - log pi_ref(y_t)`` is an unbiased sample estimate of the KL, and
    its sum over the response estimates KL(pi || pi_ref) for that prompt.

    Args:
        scores: (B,) reward-model score of each whole response.
        logprobs, ref_logprobs: (B, T) per-token log-probs under the policy and the reference.
        mask: (B, T) 1 on real response tokens.
        kl_coef: beta >= 0.
    Returns:
        rewards (B, T) and kl (B, T), both 0 on padding. ``rewards.sum(1) = scores - kl_coef * kl.sum(1)``.
    """
    mask = mask.to(logprobs.dtype)
    kl = (logprobs - ref_logprobs) * mask
    rewards = -kl_coef * kl
    last = (mask.sum(1).long() - 1).clamp(min=0)                      # index of each response's last token
    has_tokens = mask.sum(1) > 0
    rewards[torch.arange(len(scores))[has_tokens], last[has_tokens]] += scores[has_tokens].to(rewards.dtype)
    return rewards, kl


class AdaptiveKLController:
    """Adjust beta so the KL stays near a target (Ziegler et al. 2019, Section 2.2).

    beta <- beta * (1 + clip((KL / target - 1), -0.2, 0.2) * n_steps / horizon)
    """

    def __init__(self, init_kl_coef: float, target: float, horizon: int = 10_000) -> None:
        self.value, self.target, self.horizon = init_kl_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> float:
        error = min(max(current_kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n_steps / self.horizon
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


def grpo_advantages(returns: torch.Tensor, k: int, eps: float = 1e-4) -> torch.Tensor:
    """GRPO's group-normalised advantage (Shao et al. 2024, DeepSeekMath, Section 4.1.2).

    A_i = (R_i - mean_group(R)) / (std_group(R) + eps).  Shapes: (B,) -> (B,), B = n_prompts * k.
    """
    if k < 2:
        raise ValueError(f"GRPO needs k >= 2 samples per prompt, got k={k}")
    grouped = returns.view(-1, k)
    return ((grouped - grouped.mean(1, keepdim=True)) / (grouped.std(1, keepdim=True) + eps)).view(-1)


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
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_range, 1.0 + clip_range)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        stats = {"clipfrac": masked_mean((clipped > unclipped).float(), mask).item(),
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
    """Settings of one policy-gradient RLHF run (defaults: the course's CPU classroom setting)."""
    algorithm: str = "rloo"          # "reinforce" (mean baseline), "rloo", "grpo" or "ppo"
    steps: int = 40                  # policy updates, each on a fresh batch of samples
    prompts_per_step: int = 16       # distinct prompts per batch
    samples_per_prompt: int = 4      # k responses per prompt (RLOO and GRPO baselines need k >= 2)
    lr: float = 1e-3                 # AdamW learning rate of the policy (and value head)
    kl_coef: float = 0.05            # beta: weight of the per-token KL penalty to the reference
    target_kl: float | None = None   # if set, adapt beta so the KL per response stays near this (nats)
    max_new_tokens: int = MAX_NEW_TOKENS  # response length cap when sampling
    missing_eos_penalty: float | None = 4.0  # a reply with no EOS scores -this instead of the reward model's score
    max_grad_norm: float = 1.0       # gradient clipping
    ppo_epochs: int = 4              # PPO: passes over each batch
    minibatches: int = 2             # PPO: minibatches per pass
    clip_range: float = 0.2          # PPO: epsilon of the clipped ratio
    clip_range_value: float = 0.2    # PPO: clipping of the value update
    vf_coef: float = 0.1             # PPO: weight of the value loss
    gamma: float = 1.0               # PPO: discount (1: the whole response counts)
    lam: float = 0.95                # PPO: GAE lambda
    stop_kl: float = 0.05            # PPO: stop a batch's epochs early when approx KL(old||new) exceeds this
    seed: int = 0                    # seeds prompt order and sampling

    def __post_init__(self) -> None:
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"algorithm must be one of {ALGORITHMS}, got {self.algorithm!r}")
        if self.algorithm in ("rloo", "grpo") and self.samples_per_prompt < 2:
            raise ValueError(f"{self.algorithm} needs samples_per_prompt >= 2, got {self.samples_per_prompt}")
        if self.kl_coef < 0:
            raise ValueError(f"kl_coef must be >= 0, got {self.kl_coef}")
        if self.missing_eos_penalty is not None and self.missing_eos_penalty < 0:
            raise ValueError(f"missing_eos_penalty must be >= 0 or None, got {self.missing_eos_penalty}")





def train(policy, ref_policy, tokenizer, reward_fn, prompts: list[str], config: PGConfig = PGConfig(),
          gold_fn=None, progress: bool = True) -> list[dict]:
    """Fine-tune ``policy`` in place with KL-regularised policy gradient; return one log row per step.

    Args:
        policy: a causal LM (``PreTrainedModel``) to train.
        ref_policy: the frozen reference (``models.frozen_copy(policy)`` before training).
        tokenizer: their tokenizer.
        reward_fn: ``reward_fn(prompts, responses) -> (B,) tensor``, the proxy reward the policy maximises
            (the learned reward model, or the gold reward itself).
        prompts: prompt texts to draw from.
        gold_fn: optional ``(prompts, responses, ended=...) -> (B,)`` logged beside the proxy (never trained
            on), e.g. ``evaluation.gold_reward_fn``; ``ended`` is ``Samples.ended`` as a list of bools.
    Each row holds: step, proxy_reward (the scores trained on, missing-EOS penalties included), gold_reward,
    kl (nats per response), kl_coef, entropy (nats per token, sample estimate), length (tokens), ended
    (share of replies with EOS), loss, seconds; PPO adds clipfrac, value_loss, epochs.
    Stops with ``FloatingPointError`` (and a hint) on a NaN or infinite loss.
    """
    import random
    import time

    from tqdm.auto import tqdm

    from rlhf_lab.generation import SampleConfig, response_logprobs, sample

    cfg = config
    k = cfg.samples_per_prompt
    rng = random.Random(cfg.seed)
    generator = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    value_head = ValueHead(policy.config.hidden_size).to(policy.device) if cfg.algorithm == "ppo" else None
    params = list(policy.parameters()) + (list(value_head.parameters()) if value_head is not None else [])
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=0.0)
    kl_ctl = AdaptiveKLController(cfg.kl_coef, cfg.target_kl, horizon=max(cfg.steps, 1) * 4) if cfg.target_kl else None
    kl_coef = cfg.kl_coef
    sample_cfg = SampleConfig(max_new_tokens=cfg.max_new_tokens, temperature=1.0)
    history: list[dict] = []
    policy.eval()  # RL trains with dropout off, so sampling, old and new log-probs agree
    bar = tqdm(range(cfg.steps), desc=cfg.algorithm, disable=not progress)
    for step in bar:
        start = time.perf_counter()
        batch_prompts = [p for p in rng.sample(prompts, cfg.prompts_per_step) for _ in range(k)]
        samples = sample(policy, tokenizer, batch_prompts, sample_cfg, generator)
        mask = samples.response_mask.to(torch.float32)
        with torch.no_grad():
            ref_logprobs = response_logprobs(ref_policy, samples.prompt_ids, samples.prompt_mask,
                                             samples.response_ids, samples.response_mask, group=k)
            scores = score_responses(reward_fn, batch_prompts, samples.texts, samples.ended, cfg.missing_eos_penalty)
            rewards, kl = kl_shaped_rewards(scores.to(mask.device), samples.logprobs, ref_logprobs, mask, kl_coef)
        row = {"step": step, "proxy_reward": scores.mean().item(), "kl": kl.sum(1).mean().item(),
               "kl_coef": kl_coef, "entropy": (-masked_mean(samples.logprobs, mask)).item(),
               "length": mask.sum(1).mean().item(), "ended": samples.ended.float().mean().item()}
        if gold_fn is not None:
            gold = gold_fn(batch_prompts, samples.texts, ended=samples.ended.tolist())
            row["gold_reward"] = float(torch.as_tensor(gold, dtype=torch.float32).mean())
        if cfg.algorithm == "ppo":
            row.update(_ppo_update(policy, value_head, optimizer, samples, rewards, mask, cfg, params))
        else:
            returns = rewards.sum(1)                                  # score - beta * KL, per response
            if cfg.algorithm == "reinforce":
                adv = mean_baseline_advantages(returns)
            elif cfg.algorithm == "rloo":
                adv = rloo_advantages(returns, k)
            else:
                adv = grpo_advantages(returns, k)
            logprobs = response_logprobs(policy, samples.prompt_ids, samples.prompt_mask,
                                         samples.response_ids, samples.response_mask, group=k)
            loss = -(adv.detach() * logprobs.sum(1)).mean()           # REINFORCE: E[A * grad log pi(y|x)]
            _step(loss, optimizer, params, cfg.max_grad_norm, step)
            row["loss"] = loss.item()
        if kl_ctl is not None:
            kl_coef = kl_ctl.update(row["kl"], 1)
        row["seconds"] = time.perf_counter() - start
        history.append(row)
        bar.set_postfix(reward=f"{row['proxy_reward']:.2f}", kl=f"{row['kl']:.2f}")
    return history


def _step(loss: torch.Tensor, optimizer, params, max_grad_norm: float, step: int) -> None:
    if not torch.isfinite(loss):
        raise FloatingPointError(f"step {step}: the loss is {loss.item()}; training stopped. "
                                 "Lower the learning rate, or raise kl_coef, and run again.")
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    optimizer.step()


def _ppo_update(policy, value_head, optimizer, samples, rewards, mask, cfg: PGConfig, params) -> dict:
    """PPO epochs over one batch: GAE advantages, clipped policy loss, clipped value loss, early stop on KL."""
    with torch.no_grad():
        _, old_values = logprobs_and_values(policy, value_head, samples)
        advantages, returns = gae(rewards, old_values, mask, cfg.gamma, cfg.lam)
        advantages = whiten(advantages, mask)
    old_logprobs = samples.logprobs
    B = len(samples)
    size = max(1, B // cfg.minibatches)
    stats = {"loss": 0.0, "value_loss": 0.0, "clipfrac": 0.0, "approx_kl": 0.0}
    n, epochs = 0, 0
    order_gen = torch.Generator().manual_seed(cfg.seed + 7)
    for epoch in range(cfg.ppo_epochs):
        epochs += 1
        epoch_kl = []
        for idx in torch.randperm(B, generator=order_gen).split(size):
            mb = _rows(samples, idx)
            logprobs, values = logprobs_and_values(policy, value_head, mb)
            pg_loss, s = ppo_policy_loss(logprobs, old_logprobs[idx], advantages[idx], mask[idx], cfg.clip_range)
            v_loss = ppo_value_loss(values, old_values[idx], returns[idx], mask[idx], cfg.clip_range_value)
            loss = pg_loss + cfg.vf_coef * v_loss
            _step(loss, optimizer, params, cfg.max_grad_norm, epoch)
            stats["loss"] += loss.item(); stats["value_loss"] += v_loss.item()
            stats["clipfrac"] += s["clipfrac"]; stats["approx_kl"] += s["approx_kl"]
            n += 1
            epoch_kl.append(s["approx_kl"])
        if sum(epoch_kl) / len(epoch_kl) > cfg.stop_kl:
            break
    return {key: value / max(n, 1) for key, value in stats.items()} | {"epochs": epochs}


def _rows(batch, idx: torch.Tensor):
    """The sub-batch of rows ``idx`` (only the tensors ``logprobs_and_values`` needs)."""
    from rlhf_lab.generation import Batch
    return Batch(batch.prompt_ids[idx], batch.prompt_mask[idx], batch.response_ids[idx], batch.response_mask[idx])

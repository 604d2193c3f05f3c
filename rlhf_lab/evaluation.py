"""Judging policies: gold reward, win rate against another policy, KL to the reference, diversity.

The course can judge by the **gold reward** (the simulated "what people prefer" of ``rlhf_lab.world``),
which real RLHF never has, as well as by the proxy reward model and by hand.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from rlhf_lab import world


def gold_reward_fn(prompts: Sequence[str], responses: Sequence[str]) -> torch.Tensor:
    """The gold reward as a batched reward function: (prompts, responses) -> (B,) float tensor."""
    return torch.tensor([world.gold_reward(p, r) for p, r in zip(prompts, responses)], dtype=torch.float32)


def win_rate(scores_a: torch.Tensor, scores_b: torch.Tensor) -> float:
    """Share of paired comparisons A wins, ties split: mean of 1[a > b] + 0.5 * 1[a == b].  Inputs (N,)."""
    a, b = torch.as_tensor(scores_a, dtype=torch.float32), torch.as_tensor(scores_b, dtype=torch.float32)
    return ((a > b).float() + 0.5 * (a == b).float()).mean().item()


@dataclass
class Comparison:
    """Head-to-head result of two policies on the same prompts."""
    win_rate: float            # share of prompts where A's response has the higher gold reward (ties split)
    gold_a: float              # mean gold reward of A's responses
    gold_b: float              # mean gold reward of B's responses
    prompts: list[str]         # the N prompts
    texts_a: list[str]         # A's responses (N,)
    texts_b: list[str]         # B's responses (N,)


def compare(policy_a, policy_b, tokenizer, prompts: Sequence[str], samples_per_prompt: int = 1,
            max_new_tokens: int = 32, seed: int = 0, judge=gold_reward_fn) -> Comparison:
    """Sample one response per prompt (``samples_per_prompt`` times) from each policy and judge each pair."""
    from rlhf_lab.generation import SampleConfig, sample

    batch = [p for p in prompts for _ in range(samples_per_prompt)]
    cfg = SampleConfig(max_new_tokens=max_new_tokens)
    texts_a = sample(policy_a, tokenizer, batch, cfg, torch.Generator().manual_seed(seed)).texts
    texts_b = sample(policy_b, tokenizer, batch, cfg, torch.Generator().manual_seed(seed + 1)).texts
    a, b = judge(batch, texts_a), judge(batch, texts_b)
    return Comparison(win_rate(a, b), a.mean().item(), b.mean().item(), batch, texts_a, texts_b)


@torch.no_grad()
def kl_to_reference(policy, ref_policy, tokenizer, prompts: Sequence[str], samples_per_prompt: int = 1,
                    max_new_tokens: int = 32, seed: int = 0) -> float:
    """Monte-Carlo KL(pi || pi_ref) in nats per response: mean over samples y ~ pi of log pi(y|x) - log pi_ref(y|x)."""
    from rlhf_lab.generation import SampleConfig, response_logprobs, sample

    batch = [p for p in prompts for _ in range(samples_per_prompt)]
    s = sample(policy, tokenizer, batch, SampleConfig(max_new_tokens=max_new_tokens), torch.Generator().manual_seed(seed))
    ref = response_logprobs(ref_policy, s.prompt_ids, s.prompt_mask, s.response_ids, s.response_mask)
    return (s.logprobs - ref).sum(1).mean().item()


def distinct_n(texts: Sequence[str], n: int = 2) -> float:
    """Diversity: distinct word n-grams / all word n-grams over the texts (Li et al. 2016). 0 for no n-grams."""
    grams = [tuple(ws[i:i + n]) for t in texts for ws in [world.words(t)] for i in range(len(ws) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 0.0

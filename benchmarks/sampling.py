"""How long does drawing a token take, and one batch of RL samples? Prints a table.

    python benchmarks/sampling.py                  # 16 prompts x 4 samples, up to 56 new tokens, 10 batches
    python benchmarks/sampling.py --batches 20 --threads 1

Two measurements on the shipped tiny policy (``models.DEFAULT_POLICY``):
  1. one draw from (B, V) = (64, 1024) next-token probabilities, the size of notebook 05's batch and the tiny
     vocabulary: ``torch.multinomial(probs, 1)`` (what ``generation.sample`` used before) against
     ``generation.categorical`` (inverse-CDF, one uniform per row; what it uses now), in milliseconds per draw;
  2. ``generation.sample`` on notebook 05's batch (16 random training prompts, each 4 times, up to 56 new tokens),
     seconds per batch, once with each sampler (the same distribution, other draws), each batch from the same seed.
Run it on an otherwise idle machine; the first batch of each is a warm-up and not timed.
"""
from __future__ import annotations

import argparse
import platform
import random
import time
from unittest import mock

import torch

from rlhf_lab import generation, models, world


def per_call_ms(fn, n: int = 200) -> float:
    for _ in range(5):
        fn()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n * 1e3


def multinomial(probs: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """The sampler ``generation.sample`` used before ``categorical``."""
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {args.threads} threads")

    g = torch.Generator().manual_seed(0)
    probs = torch.randn(64, 1024, generator=g).softmax(-1)
    draws = {name: per_call_ms(lambda f=f: f(probs, g)) for name, f in
             [("torch.multinomial", multinomial), ("generation.categorical", generation.categorical)]}
    print("\none draw from (64, 1024) probabilities, ms")
    for name, ms in draws.items():
        print(f"  {name:24} {ms:7.3f}")

    policy, tokenizer = models.load_policy(models.DEFAULT_POLICY)
    train, _ = world.split_prompts(world.load_prompts())
    rng = random.Random(0)
    batches = [[p.text for p in rng.sample(train, 16) for _ in range(4)] for _ in range(args.batches + 1)]
    config = generation.SampleConfig(max_new_tokens=56)
    print(f"\ngeneration.sample, 16 prompts x 4 samples, up to 56 new tokens, {args.batches} batches: s per batch")
    for name, sampler in [("torch.multinomial", multinomial), ("generation.categorical", generation.categorical)]:
        with mock.patch.object(generation, "categorical", sampler):
            g = torch.Generator().manual_seed(0)
            generation.sample(policy, tokenizer, batches[0], config, g)          # warm-up
            start, tokens = time.perf_counter(), 0
            for batch in batches[1:]:
                tokens += int(generation.sample(policy, tokenizer, batch, config, g).response_mask.sum())
            seconds = (time.perf_counter() - start) / args.batches
        print(f"  {name:24} {seconds:7.3f} s   ({tokens / args.batches:.0f} response tokens per batch)")


if __name__ == "__main__":
    main()

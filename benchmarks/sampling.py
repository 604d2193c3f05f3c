"""How long does drawing a token take, one batch of RL samples, and the log-probs of that batch? Prints tables.

    python benchmarks/sampling.py                  # 16 prompts x 4 samples, up to 56 new tokens, 10 batches
    python benchmarks/sampling.py --batches 20 --threads 1
    python benchmarks/sampling.py --bucket-rows 32          # response_logprobs in passes of 32 rows instead of 16
    python benchmarks/sampling.py --max-new-tokens 32       # benchmarks/trl_rloo.py's cap: less padding

Two measurements on the shipped tiny policy (``models.DEFAULT_POLICY``):
  1. one draw from (B, V) = (64, 1024) next-token probabilities, the size of notebook 05's batch and the tiny
     vocabulary: ``torch.multinomial(probs, 1)`` (what ``generation.sample`` used before) against
     ``generation.categorical`` (inverse-CDF, one uniform per row; what it uses now), in milliseconds per draw;
  2. ``generation.sample`` on notebook 05's batch (16 random training prompts, each 4 times, up to 56 new tokens),
     seconds per batch, once with each sampler (the same distribution, other draws), each batch from the same seed;
  3. ``generation.response_logprobs`` of those batches (the reference pass of an RL step, and the policy's
     forward and backward pass of its update, top two blocks trained as in notebook 05), in one pass over the
     padded batch (``bucket_rows=None``) against passes of 16 rows sorted by length (the default), and the
     largest difference between the two in the log-probs.
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
    parser.add_argument("--max-new-tokens", type=int, default=56, help="response length cap (benchmarks/trl_rloo.py: 32)")
    parser.add_argument("--bucket-rows", type=int, default=generation.LENGTH_BUCKET_ROWS,
                        help="rows per pass of response_logprobs to compare with one pass (default: the package's)")
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
    config = generation.SampleConfig(max_new_tokens=args.max_new_tokens)
    print(f"\ngeneration.sample, 16 prompts x 4 samples, up to {args.max_new_tokens} new tokens, {args.batches} batches: s per batch")
    for name, sampler in [("torch.multinomial", multinomial), ("generation.categorical", generation.categorical)]:
        with mock.patch.object(generation, "categorical", sampler):
            g = torch.Generator().manual_seed(0)
            generation.sample(policy, tokenizer, batches[0], config, g)          # warm-up
            start, tokens = time.perf_counter(), 0
            for batch in batches[1:]:
                tokens += int(generation.sample(policy, tokenizer, batch, config, g).response_mask.sum())
            seconds = (time.perf_counter() - start) / args.batches
        print(f"  {name:24} {seconds:7.3f} s   ({tokens / args.batches:.0f} response tokens per batch)")

    g = torch.Generator().manual_seed(0)
    samples = [generation.sample(policy, tokenizer, batch, config, g) for batch in batches]
    padded = sum(s.response_mask.numel() for s in samples[1:]) / args.batches
    real = sum(int(s.response_mask.sum()) for s in samples[1:]) / args.batches
    print(f"\ngeneration.response_logprobs of those batches (group=4; {real:.0f} response tokens in {padded:.0f} "
          "padded columns per batch): s per batch")
    trainable = models.trainable_copy(policy)
    models.freeze_bottom_layers(trainable, 2)

    def run(s, bucket_rows, grad: bool) -> torch.Tensor:
        args_ = (s.prompt_ids, s.prompt_mask, s.response_ids, s.response_mask)
        if not grad:
            with torch.no_grad():
                return generation.response_logprobs(policy, *args_, group=4, bucket_rows=bucket_rows)
        out = generation.response_logprobs(trainable, *args_, group=4, bucket_rows=bucket_rows)
        out.sum().backward()
        return out.detach()

    for label, grad in [("no gradients (reference pass)", False), ("forward + backward (update)", True)]:
        times, outputs = {}, {}
        for rows in (None, args.bucket_rows, None, args.bucket_rows):   # interleaved
            run(samples[0], rows, grad)                                                          # warm-up
            start = time.perf_counter()
            outputs[rows] = [run(s, rows, grad) for s in samples[1:]]
            times.setdefault(rows, []).append((time.perf_counter() - start) / args.batches)
        gap = max((a - b).abs().max().item() for a, b in zip(outputs[None], outputs[args.bucket_rows]))
        one, buckets = min(times[None]), min(times[args.bucket_rows])
        print(f"  {label:30} one pass {one:6.3f}   passes of {args.bucket_rows} rows {buckets:6.3f}"
              f"   ({buckets / one - 1:+.0%} time; log-probs differ by at most {gap:.1e})")


if __name__ == "__main__":
    main()

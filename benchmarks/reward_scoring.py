"""How fast the reward model scores RL replies, per ``batch_size`` of ``reward_model.score`` (why SCORE_BATCH is 16).

    python benchmarks/reward_scoring.py                 # 64 and 512 replies of the tiny policy, up to 56 tokens
    python benchmarks/reward_scoring.py --sizes 8 16 32 64 128

``score`` sorts the texts by length before it batches them, so a smaller batch pads less; too small a batch
pays the per-call cost of the model more often. Prints seconds per call (median of the repeats) for each
batch size and the largest difference of the scores from those at the largest size (float rounding only).
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from rlhf_lab import models, reward_model as rm, world
from rlhf_lab.generation import SampleConfig, sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8, 16, 32, 64, 128], help="batch sizes to time")
    parser.add_argument("--replies", type=int, nargs="+", default=[64, 512], help="replies per call (k = 4 per prompt)")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    policy, tokenizer = models.load_policy()
    net, reward_tokenizer = rm.default_reward_model(progress=False)
    train, _ = world.split_prompts(world.load_prompts())
    print(f"reward model {rm.DEFAULT_REWARD_MODEL.name}, {torch.get_num_threads()} threads; default SCORE_BATCH = "
          f"{rm.SCORE_BATCH}\n")
    print(f"{'replies':>8}{'batch':>7}{'s / call':>10}{'max |diff|':>12}")
    for n in args.replies:
        prompts = [p.text for p in (train * (n // len(train) + 1))[:n // 4] for _ in range(4)]
        texts = sample(policy, tokenizer, prompts, SampleConfig(max_new_tokens=56), torch.Generator().manual_seed(0)).texts
        reference = rm.score(net, reward_tokenizer, prompts, texts, batch_size=max(args.sizes))
        for size in args.sizes:
            rm.score(net, reward_tokenizer, prompts, texts, batch_size=size)          # warm-up
            seconds = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                out = rm.score(net, reward_tokenizer, prompts, texts, batch_size=size)
                seconds.append(time.perf_counter() - start)
            print(f"{n:>8}{size:>7}{statistics.median(seconds):10.3f}{(out - reference).abs().max().item():12.1e}")


if __name__ == "__main__":
    main()

"""Policy-gradient benchmark: step throughput and the learning figures of notebooks 05/06.

    python benchmarks/policy_gradient.py            # RLOO and PPO at the notebooks' settings
    python benchmarks/policy_gradient.py --steps 10 # a quicker throughput-only look

Prints one table row per algorithm: seconds per step, samples/s, response tokens/s, and, judged by the
gold reward on the held-out prompts, the tuned policy's win rate against the reference (ties split)
and its KL to the reference in nats per response. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import time

import torch

from rlhf_lab import evaluation, models, policy_gradient as pg, reward_model as rm, set_seed, world

SETTINGS = {  # the notebooks' defaults (05 for RLOO, 06 for PPO)
    "rloo": dict(lr=3e-4),
    "ppo": dict(lr=1e-4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(2)
    policy, tokenizer = models.load_policy()
    reward_net, reward_tokenizer = rm.default_reward_model(progress=False)
    train, test = world.split_prompts(world.load_prompts())
    train_texts, test_texts = [p.text for p in train], [p.text for p in test]
    print(f"{'algorithm':<10}{'s/step':>8}{'samples/s':>11}{'tokens/s':>10}{'win rate':>10}{'KL':>7}")
    for algorithm, extra in SETTINGS.items():
        set_seed(args.seed)
        model = models.frozen_copy(policy)
        for p in model.parameters():
            p.requires_grad_(True)
        reference = models.frozen_copy(policy)
        config = pg.PGConfig(algorithm=algorithm, steps=args.steps, kl_coef=0.1, seed=args.seed, **extra)
        start = time.perf_counter()
        log = pg.train(model, reference, tokenizer, lambda p, r: rm.score(reward_net, reward_tokenizer, p, r),
                       train_texts, config, gold_fn=evaluation.gold_reward_fn, progress=False)
        seconds = time.perf_counter() - start
        samples = args.steps * config.prompts_per_step * config.samples_per_prompt
        tokens = sum(r["length"] for r in log) * config.prompts_per_step * config.samples_per_prompt
        result = evaluation.compare(model, reference, tokenizer, test_texts, samples_per_prompt=2, seed=args.seed)
        kl = evaluation.kl_to_reference(model, reference, tokenizer, test_texts, samples_per_prompt=2, seed=args.seed)
        print(f"{algorithm:<10}{seconds / args.steps:8.2f}{samples / seconds:11.1f}{tokens / seconds:10.0f}"
              f"{result.win_rate:10.1%}{kl:7.1f}", flush=True)


if __name__ == "__main__":
    main()

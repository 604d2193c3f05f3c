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
    "rloo": dict(lr=6e-4, num_layers_unfrozen=2),
    "ppo": dict(lr=3e-4, num_layers_unfrozen=2, ppo_epochs=2),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--algorithms", nargs="+", default=list(SETTINGS), choices=["reinforce", "rloo", "grpo", "ppo"])
    parser.add_argument("--lr", type=float, default=None, help="override the learning rate of every algorithm")
    parser.add_argument("--ppo-epochs", type=int, default=None)
    parser.add_argument("--minibatches", type=int, default=None)
    parser.add_argument("--beta", type=float, default=0.1, help="weight of the KL penalty (notebooks: 0.1)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--eval-samples", type=int, default=8,
                        help="samples per held-out prompt for win rate and KL (8: 504 comparisons)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    policy, tokenizer = models.load_policy()
    reward_net, reward_tokenizer = rm.default_reward_model(progress=False)
    train, test = world.split_prompts(world.load_prompts())
    train_texts, test_texts = [p.text for p in train], [p.text for p in test]
    print(f"{'algorithm':<10}{'seed':>5}{'s/step':>8}{'samples/s':>11}{'tokens/s':>10}{'win rate':>10}{'KL':>7}")
    for algorithm in args.algorithms:
        extra = dict(SETTINGS.get(algorithm, SETTINGS["rloo"]))
        if args.lr is not None:
            extra["lr"] = args.lr
        if args.ppo_epochs is not None:
            extra["ppo_epochs"] = args.ppo_epochs
        if args.minibatches is not None:
            extra["minibatches"] = args.minibatches
        for seed in args.seeds:
            set_seed(seed)
            model = models.trainable_copy(policy)
            reference = models.frozen_copy(policy)
            config = pg.PGConfig(algorithm=algorithm, steps=args.steps, beta=args.beta, seed=seed, **extra)
            start = time.perf_counter()
            log = pg.train(model, reference, tokenizer, lambda p, r: rm.score(reward_net, reward_tokenizer, p, r),
                           train_texts, config, gold_fn=evaluation.gold_reward_fn, progress=False)
            seconds = time.perf_counter() - start
            samples = args.steps * config.prompts_per_step * config.samples_per_prompt
            tokens = sum(r["length"] for r in log) * config.prompts_per_step * config.samples_per_prompt
            result = evaluation.compare(model, reference, tokenizer, test_texts, samples_per_prompt=args.eval_samples,
                                        seed=seed)
            kl = evaluation.kl_to_reference(model, reference, tokenizer, test_texts, samples_per_prompt=args.eval_samples,
                                            seed=seed)
            print(f"{algorithm:<10}{seed:>5}{seconds / args.steps:8.2f}{samples / seconds:11.1f}"
                  f"{tokens / seconds:10.0f}{result.win_rate:10.1%}{kl:7.1f}", flush=True)


if __name__ == "__main__":
    main()

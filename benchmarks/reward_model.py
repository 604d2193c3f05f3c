"""How good is the course's reward model, and how long does it take? Prints a table.

    python benchmarks/reward_model.py                 # the default setting, seed 0
    python benchmarks/reward_model.py --seeds 0 1 2   # several seeds (about 8 minutes each on 2 cores)
    python benchmarks/reward_model.py --threads 2    # notebook 03 uses 1 (faster on a busy machine)

For each seed: the transformer reward model trained exactly as ``rm.build_default_reward_model`` trains
it (not saved), and the linear reward model on independent pairs. Both are measured on the same held-out
pairs (held-out prompts, clicks by the simulated rater): accuracy against the clicks, the Bayes ceiling
of those clicks, the gap in points, the expected accuracy (mean probability that the rater agrees with
the model's choice: the accuracy without the luck of this draw of clicks), accuracy against gold's
preferred side, and wall-clock training time. Acceptance (issues #4, #11): transformer within 2 points of
the ceiling at temperature 1. Then, per defect of ``world.DEFECTS``, the share of minimal pairs on held-out
prompts (a fluent reply against the same reply with that one defect) that each reward model ranks right.
"""
from __future__ import annotations

import argparse
import dataclasses
import platform
import time

import torch

from rlhf_lab import linear_reward, reward_data, world
from rlhf_lab import reward_model as rm


def run(seed: int, setup: reward_data.DefaultRewardSetup, n_linear_pairs: int) -> list[dict]:
    """Train both reward models for one seed; one row per model."""
    setup = dataclasses.replace(setup, seed=seed)
    start = time.perf_counter()
    model, tokenizer, info = rm.build_default_reward_model(None, setup=setup, progress=False)
    rows = [{"model": "transformer", "seed": seed, "train_s": info["train_seconds"],
             "total_s": time.perf_counter() - start, **info["held_out"], "scorer": rm.CachedScorer(model, tokenizer)}]
    train_prompts, _ = world.split_prompts(world.load_prompts())
    _, held_out = reward_data.default_data(setup)
    start = time.perf_counter()
    linear, _ = linear_reward.train_linear_reward_model(
        world.simulate_preferences(n_linear_pairs, setup.temperature, seed, prompts=train_prompts))
    train_s = time.perf_counter() - start
    rows.append({"model": "linear", "seed": seed, "train_s": train_s, "total_s": time.perf_counter() - start,
                 **rm.evaluate(linear, held_out, setup.temperature), "scorer": linear.score})
    return rows


def defect_shares(scorer, n: int = 100) -> dict[str, float]:
    """Per defect of ``world.DEFECTS``: the share of ``n`` held-out minimal pairs ``scorer`` ranks right (the same
    pairs for every scorer). ``scorer(prompts, responses) -> (B,)``, e.g. ``rm.CachedScorer`` or ``LinearRewardModel.score``."""
    _, test_prompts = world.split_prompts(world.load_prompts())
    shares = {}
    for defect in world.DEFECTS:
        recs = reward_data.simulate_minimal_pairs(test_prompts, {defect: n}, temperature=0.0, seed=123)
        prompts, good, bad = [r.prompt for r in recs], [r.chosen for r in recs], [r.rejected for r in recs]
        shares[defect] = float((torch.as_tensor(scorer(prompts, good)) > torch.as_tensor(scorer(prompts, bad)))
                               .float().mean())
    return shares


def defect_table(rows: list[dict], n: int = 100) -> None:
    """Per defect: the share of held-out minimal pairs each reward model ranks right."""
    print(f"\nminimal pairs on held-out prompts ({n} per defect): share ranked right")
    print(f"{'defect':32}" + "".join(f"{r['model'] + ' ' + str(r['seed']):>16}" for r in rows))
    columns = [defect_shares(r["scorer"], n) for r in rows]
    for defect in world.DEFECTS:
        print(f"{defect:32}" + "".join(f"{c[defect]:16.0%}" for c in columns))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads (default 2; 0: torch's choice)")
    parser.add_argument("--linear-pairs", type=int, default=2000, help="independent pairs for the linear model")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    setup = reward_data.DefaultRewardSetup()
    for i, stage in enumerate(setup.stages, 1):
        print(f"stage {i}: {stage.n_random_pairs} random pairs + minimal pairs {stage.per_defect()}, "
              f"{stage.epochs} epoch(s) at lr {stage.lr}")
    print(f"temperature {setup.temperature}, {setup.n_held_out_pairs} held-out pairs on held-out prompts")
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {platform.processor() or platform.machine()}\n")
    header = f"{'model':12}{'seed':>5}{'accuracy':>10}{'ceiling':>9}{'gap (pts)':>11}{'expected':>10}" \
             f"{'exp. gap':>10}{'gold acc':>10}{'train s':>9}{'total s':>9}"
    print(header + "\n" + "-" * len(header))
    all_rows = []
    for seed in args.seeds:
        for r in run(seed, setup, args.linear_pairs):
            all_rows.append(r)
            print(f"{r['model']:12}{r['seed']:>5}{r['accuracy']:10.3f}{r['ceiling']:9.3f}{100 * r['gap']:11.1f}"
                  f"{r['expected_accuracy']:10.3f}{100 * (r['ceiling'] - r['expected_accuracy']):10.1f}"
                  f"{r['gold_accuracy']:10.3f}{r['train_s']:9.1f}{r['total_s']:9.1f}", flush=True)
    defect_table(all_rows)


if __name__ == "__main__":
    main()

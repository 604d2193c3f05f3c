"""RLOO with the bottom of the tiny policy frozen: does it move further without garbling its sentences? (issues #11, #12)

    python benchmarks/frozen_layers.py                     # 3 settings x 2 rewards x 3 seeds: about 15 minutes
    python benchmarks/frozen_layers.py --seeds 0 --rewards rm
    python benchmarks/frozen_layers.py --table             # print the table of what is saved

Larger RLOO steps on every weight garble the 2 M-parameter policy's sentences, even when it is trained on the gold
reward itself; notebooks 05 and 06 therefore train only its top two blocks. This compares, at notebook 05's batch
(16 prompts x 4 samples, 30 steps, beta 0.1) and seed:

* ``all 1.5e-4``: every parameter, at the step that does not garble it (``PGConfig``'s default);
* ``all 6e-4``: every parameter, four times the step (is it just the larger step?);
* ``top-2 6e-4``: ``PGConfig(num_layers_unfrozen=2)``: the embeddings (tied to the output layer) and the two
  lower blocks stay the reference's (``models.freeze_bottom_layers``), four times the step (notebook 05).

each trained on the course's reward model (``rm``: what notebooks 05-08 train on) and on the gold reward itself
(``gold``: what a perfect reward model would give). Judged on the held-out prompts, 4 samples each (252
comparisons): gold win rate against the reference (ties split), mean gold, KL(pi || pi_ref) in nats per response
(k1, sampled) and the share of the tuned replies' sentences that are well-formed (the reference's: about 96 %).

Each finished run is appended to ``build/frozen_layers/runs.jsonl`` at once (a rerun skips what is there).
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from seeds import append_run, mean_sd, policy_and_proxy, saved_runs, sweep_arguments   # benchmarks/seeds.py

from rlhf_lab import evaluation, models, policy_gradient as pg, set_seed, world

OUT = Path("build/frozen_layers")
#: name -> (num_layers_unfrozen, lr)
SETTINGS = {"all 1.5e-4": (None, 1.5e-4), "all 6e-4": (None, 6e-4), "top-2 6e-4": (2, 6e-4)}


def run_one(setting: str, reward: str, seed: int, policy, tokenizer, reward_fns, train_texts, test_texts,
            eval_samples: int) -> dict:
    unfrozen, lr = SETTINGS[setting]
    set_seed(seed)
    ref_model = models.frozen_copy(policy)
    model = models.trainable_copy(policy)
    config = pg.PGConfig(lr=lr, num_layers_unfrozen=unfrozen, seed=seed)
    start = time.perf_counter()
    pg.train(model, ref_model, tokenizer, reward_fns[reward], train_texts, config, progress=False)
    seconds = time.perf_counter() - start
    result = evaluation.compare(model, ref_model, tokenizer, test_texts, samples_per_prompt=eval_samples, seed=seed)
    kl = evaluation.kl_to_reference(model, ref_model, tokenizer, test_texts, samples_per_prompt=eval_samples, seed=seed)
    return {"setting": setting, "reward": reward, "seed": seed, "win_rate": result.win_rate, "gold": result.gold_a,
            "reference_gold": result.gold_b, "kl": kl, "comparisons": len(result.prompts),
            "well_formed": world.fluency(result.texts_a)["well_formed"],
            "reference_well_formed": world.fluency(result.texts_b)["well_formed"], "train_seconds": seconds}


def table(records: list[dict]) -> str:
    lines = [f"{'reward':<7}{'setting':<12}{'seeds':>6}{'win rate %':>14}{'gold':>14}{'KL nats':>13}"
             f"{'well-formed %':>16}{'train s':>9}"]
    for reward in ("rm", "gold"):
        for setting in SETTINGS:
            rs = [r for r in records if r["reward"] == reward and r["setting"] == setting]
            if not rs:
                continue
            lines.append(f"{reward:<7}{setting:<12}{len(rs):>6}{mean_sd([100 * r['win_rate'] for r in rs], '.1f'):>14}"
                         f"{mean_sd([r['gold'] for r in rs], '+.2f'):>14}{mean_sd([r['kl'] for r in rs], '.2f'):>13}"
                         f"{mean_sd([100 * r['well_formed'] for r in rs], '.1f'):>16}"
                         f"{statistics.mean(r['train_seconds'] for r in rs):>9.0f}")
    ref = [r for r in records if "reference_gold" in r]
    if ref:
        lines.append(f"reference on the same prompts: gold {statistics.mean(r['reference_gold'] for r in ref):+.2f}, "
                     f"well-formed {100 * statistics.mean(r['reference_well_formed'] for r in ref):.1f} %")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--rewards", nargs="+", default=["rm", "gold"], choices=["rm", "gold"])
    sweep_arguments(parser)
    args = parser.parse_args()
    runs, records = saved_runs(OUT)
    if not args.table:
        policy, tokenizer, proxy = policy_and_proxy(args.threads)
        reward_fns = {"rm": proxy, "gold": evaluation.gold_reward_fn}
        train_prompts, test_prompts = world.split_prompts(world.load_prompts())
        train_texts, test_texts = [p.text for p in train_prompts], [p.text for p in test_prompts]
        done = {(r["setting"], r["reward"], r["seed"]) for r in records}
        for seed in args.seeds:
            for reward in args.rewards:
                for setting in args.settings:
                    if (setting, reward, seed) in done:
                        continue
                    row = run_one(setting, reward, seed, policy, tokenizer, reward_fns, train_texts, test_texts,
                                  args.eval_samples)
                    append_run(runs, row)
                    records.append(row)
                    print(f"{reward} {setting} seed {seed}: win {100 * row['win_rate']:.1f} %, gold {row['gold']:+.2f}, "
                          f"KL {row['kl']:.2f}, well-formed {100 * row['well_formed']:.1f} % "
                          f"({row['train_seconds']:.0f} s)", flush=True)
    print(table(records))


if __name__ == "__main__":
    main()

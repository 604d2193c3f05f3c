"""Notebook 11 ("Rewards you can check") under several seeds: pass rates, gold and KL before and after (issue 17).

    python benchmarks/rewards_you_can_check.py                 # seeds 0 1 2: about 100 s a seed on 2 cores
    python benchmarks/rewards_you_can_check.py --seeds 0 1

Runs ``notebooks/11_rewards_you_can_check.ipynb`` headless once per seed (papermill, default parameters otherwise,
a fresh artifacts folder), reads the figures each run saves to ``ARTIFACTS/rewards_you_can_check/seed<N>.json``,
and prints per seed and as mean ± standard deviation over the seeds, for the reference and the three GRPO runs at
beta = 0 (strict checker, reward model, sloppy checker): the strict pass rate per instruction on held-out prompts,
the sloppy checker's pass rate, gold, reward-model score, KL and the share of well-formed sentences; then pass@1
and pass@8 of the reference and the strict run; and how much the reward model run gained over the reference on
held-out prompts by its reward model's score and by gold. Run it on an otherwise idle machine.
"""
from __future__ import annotations

from seeds import mean_sd, run_per_seed   # benchmarks/seeds.py, next to this script


def main() -> int:
    runs = run_per_seed("11", "rewards_you_can_check", __doc__.split("\n\n")[0])
    if not runs:
        return 1
    seeds = " ".join(f"{'seed ' + str(r['seed']):>8}" for r in runs)
    names = list(runs[0]["instructions"]) + ["all"]
    columns = [(f"pass {n}", lambda p, n=n: 100 * p["strict"][n], ".0f", " %") for n in names]
    columns += [("sloppy checker's pass", lambda p: 100 * p["literal"]["all"], ".0f", " %"),
                ("gold", lambda p: p["gold"], "+.2f", ""), ("reward model", lambda p: p["reward_model"], "+.2f", ""),
                ("KL (nats)", lambda p: p["kl"], ".1f", ""), ("words", lambda p: p["length"], ".1f", ""),
                ("well-formed", lambda p: 100 * p["well_formed"], ".1f", " %")]
    for policy in runs[0]["policies"]:
        print(f"\n{policy}\n{'':>24} {seeds}   mean ± sd")
        for label, get, fmt, unit in columns:
            values = [get(r["policies"][policy]) for r in runs]
            print(f"{label:>24} " + " ".join(f"{format(v, fmt):>8}" for v in values) + f"   {mean_sd(values, fmt)}{unit}")
    print(f"\npass@k on held-out prompts\n{'':>24} {seeds}   mean ± sd")
    for policy in runs[0]["pass_at_k"]:
        for k in (1, len(runs[0]["pass_at_k"][policy])):
            values = [100 * r["pass_at_k"][policy][k - 1] for r in runs]
            print(f"{policy + f' pass@{k}':>24} " + " ".join(f"{v:8.0f}" for v in values) + f"   {mean_sd(values, '.0f')} %")
    print("\nthe reward model run against the reference, held out (the reward model over-rates its policy's change)")
    for label, key in [("reward model's gain", "reward_model"), ("gold's gain", "gold")]:
        values = [r["rm_run_gain"][key] for r in runs]
        print(f"{label:>24} " + " ".join(f"{v:+8.2f}" for v in values) + f"   {mean_sd(values, '+.2f')}")
    print(f"{'notebook seconds':>24} " + " ".join(f"{r['seconds']:8.0f}" for r in runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

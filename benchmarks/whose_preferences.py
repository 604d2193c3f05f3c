"""Notebook 10 ("Whose preferences?") under several seeds: the pooling table and the DPO-family table (issue 16).

    python benchmarks/whose_preferences.py                 # seeds 0 1 2: about 2 minutes a seed on 2 cores
    python benchmarks/whose_preferences.py --seeds 0 1

Runs ``notebooks/10_whose_preferences.ipynb`` headless once per seed (papermill, default parameters otherwise,
a fresh artifacts folder), reads the figures each run saves to ``ARTIFACTS/whose_preferences/seed<N>.json``, and
prints per seed and as mean ± standard deviation over the seeds:
  - pooling a panel: the held-out gold accuracy of the linear reward model for each way of pooling;
  - two groups: how much each group prefers its own reward model's best-of-16 picks to the pooled model's;
  - the length-bias run: reward model slope per word, and length and gold early -> late in the two RL runs;
  - the DPO family at high rater noise: gold win rate against the reference and KL, per loss.
Run it on an otherwise idle machine (the notebook's seconds are printed too).
"""
from __future__ import annotations

from seeds import mean_sd, run_per_seed   # benchmarks/seeds.py, next to this script


def main() -> int:
    runs = run_per_seed("10", "whose_preferences", __doc__.split("\n\n")[0])
    if not runs:
        return 1
    seeds = " ".join(f"{'seed ' + str(r['seed']):>8}" for r in runs)

    print(f"\nPooling a panel: held-out gold accuracy of the linear reward model\n{'':>34} {seeds}   mean ± sd")
    for i, name in enumerate(runs[0]["pooling"]):   # rows in the notebook's order; some names carry a count
        values = [list(r["pooling"].values())[i] for r in runs]
        names = sorted({list(r["pooling"])[i] for r in runs})
        label = name.split(" (")[0] if len(names) > 1 else name
        print(f"{label:>34} " + " ".join(f"{v:8.1%}" for v in values) + f"   {mean_sd([100 * v for v in values], '.1f')} %"
              + (f"   ({'; '.join(names)})" if len(names) > 1 else ""))

    print(f"\nTwo groups: P(group prefers its own RM's picks to the pooled RM's)\n{'':>34} {seeds}")
    for group in runs[0]["groups"]["own"]:
        print(f"{group:>34} " + " ".join(f"{r['groups']['own'][group]:8.1%}" for r in runs))

    print(f"\nLength bias: reward per word, and early -> late in the RL runs\n{'':>34} {seeds}")
    for name in ("biased", "fair"):
        print(f"{'RM slope per word, ' + name:>34} " + " ".join(f"{r['length_bias']['rm_slope'][name]:+8.3f}" for r in runs))
        for key in ("length", "gold_reward"):
            print(f"{name + ' run, ' + key:>34} " + " ".join(
                f"{r['length_bias'][name][key][0]:+.1f}>{r['length_bias'][name][key][1]:+.1f}".rjust(8) for r in runs))

    print(f"\nThe DPO family at rater noise T = 3 (flip rate {mean_sd([r['flip_rate'] for r in runs], '.3f')})")
    print(f"{'':>26} {'gold win rate vs reference':>28} {'KL (nats)':>22}")
    for i, name in enumerate(runs[0]["family"]):
        rows = [list(r["family"].values())[i] for r in runs]
        wins, kls = [row["win_rate"] for row in rows], [row["kl"] for row in rows]
        label = name.split(" (eps")[0]
        print(f"{label:>26} {mean_sd([100 * w for w in wins], '.1f') + ' %':>28} {mean_sd(kls, '.2f'):>22}"
              f"   per seed: " + ", ".join(f"{w:.1%} / {k:.2f}" for w, k in zip(wins, kls)))
    print(f"\nnotebook seconds: " + ", ".join(f"{r['seconds']:.0f}" for r in runs))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

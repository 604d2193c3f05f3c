"""Methods compared at equal KL: a beta sweep of RLOO, GRPO, PPO and DPO, and the best-of-n curve (issue #12).

    python benchmarks/beta_sweep.py                       # 4 methods x 3 betas x 3 seeds: about 30 minutes
    python benchmarks/beta_sweep.py --methods rloo --seeds 0 --betas 0.1
    python benchmarks/beta_sweep.py --table               # print the table (and draw the figure) of what is saved

Every run starts from the shipped tiny policy, trains at the notebooks' settings (05: RLOO lr 6e-4 on the top two
blocks; 06: PPO lr 3e-4, 2 epochs, on the top two blocks, GRPO as RLOO; 07: DPO lr 1e-4 on 19,200 simulated pairs)
with only beta changed, and is
judged on the held-out prompts: mean gold reward of its replies, gold win rate against the reference (ties
split), and KL(pi || pi_ref) in nats per response (k1, sampled). Best-of-n is drawn from one pool of reference
samples per seed; its KL is the upper bound log n - (n - 1) / n (Beirami et al. 2024), so its points sit at
or to the right of where they truly are.

Each finished run is appended to ``build/beta_sweep/runs.jsonl`` at once (a rerun skips what is there), so
an interrupted sweep loses nothing; the table is printed from that file and the figure saved beside it.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from seeds import append_run, policy_and_proxy, saved_runs, sweep_arguments   # benchmarks/seeds.py, next to this script

from rlhf_lab import dpo, evaluation, models, policy_gradient as pg, reward_data, set_seed, world

OUT = Path("build/beta_sweep")
BETAS = {"rloo": [0.03, 0.1, 0.3], "grpo": [0.03, 0.1, 0.3], "ppo": [0.03, 0.1, 0.3], "dpo": [0.1, 0.25, 0.5]}
LR = {"rloo": 6e-4, "grpo": 6e-4, "ppo": 3e-4, "dpo": 1e-4}
UNFROZEN = {"rloo": 2, "grpo": 2, "ppo": 2}   # PGConfig.num_layers_unfrozen (None: every parameter)
BON_N = [1, 2, 4, 8, 16]


def run_one(method: str, beta: float, seed: int, policy, tokenizer, proxy, train_prompts, test_texts,
            eval_samples: int) -> dict:
    set_seed(seed)
    ref_model = models.frozen_copy(policy)
    model = models.trainable_copy(policy)
    start = time.perf_counter()
    if method == "dpo":
        pairs = reward_data.simulate_comparisons(train_prompts, n_prompts=320, k=16, temperature=1.0, seed=seed)[:19200]
        dpo.train_dpo(model, ref_model, tokenizer, pairs,
                      dpo.DPOConfig(beta=beta, lr=LR[method], epochs=1, batch_size=240, seed=seed), progress=False)
    else:
        extra = {"ppo_epochs": 2} if method == "ppo" else {}
        config = pg.PGConfig(algorithm=method, beta=beta, lr=LR[method], num_layers_unfrozen=UNFROZEN[method], seed=seed,
                             **extra)
        pg.train(model, ref_model, tokenizer, proxy, [p.text for p in train_prompts], config, progress=False)
    seconds = time.perf_counter() - start
    result = evaluation.compare(model, ref_model, tokenizer, test_texts, samples_per_prompt=eval_samples, seed=seed)
    kl = evaluation.kl_to_reference(model, ref_model, tokenizer, test_texts, samples_per_prompt=eval_samples, seed=seed)
    return {"method": method, "beta": beta, "seed": seed, "gold": result.gold_a, "reference_gold": result.gold_b,
            "win_rate": result.win_rate, "comparisons": len(result.prompts), "kl": kl, "train_seconds": seconds}


def best_of_n(seed: int, policy, tokenizer, proxy, test_texts) -> list[dict]:
    pool = evaluation.best_of_n_pool(policy, tokenizer, test_texts, max(BON_N), proxy, seed=seed)
    rows = []
    for n in BON_N:
        rows.append({"method": "best-of-n", "n": n, "seed": seed,
                     "gold": evaluation.best_of_n_expected(pool.proxy, pool.gold, n), "kl": evaluation.best_of_n_kl(n)})
    return rows


def _mean_sd(xs: list[float]) -> str:
    return f"{statistics.mean(xs):+.2f} ± {statistics.stdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:+.2f}"


def table(records: list[dict]) -> str:
    lines = [f"{'method':<10}{'beta / n':>9}{'seeds':>6}{'gold (mean ± sd)':>20}{'KL nats (mean ± sd)':>28}{'win rate':>14}"]
    keys = sorted({(r["method"], r.get("beta", r.get("n"))) for r in records}, key=lambda k: (k[0], k[1]))
    for method, b in keys:
        rs = [r for r in records if r["method"] == method and r.get("beta", r.get("n")) == b]
        wins = [100 * r["win_rate"] for r in rs if "win_rate" in r]
        win = "" if not wins else f"{statistics.mean(wins):.0f}" + (f" ± {statistics.stdev(wins):.0f}" if len(wins) > 1 else "") + " %"
        kl = _mean_sd([r["kl"] for r in rs]).replace("+", "") + (" (bound)" if method == "best-of-n" else "")
        lines.append(f"{method:<10}{b:>9}{len(rs):>6}{_mean_sd([r['gold'] for r in rs]):>20}{kl:>28}{win:>14}")
    ref = [r["reference_gold"] for r in records if "reference_gold" in r]
    if ref:
        lines.append(f"reference gold on the same prompts: {statistics.mean(ref):+.2f}")
    return "\n".join(lines)


def figure(records: list[dict], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, method in enumerate(["rloo", "grpo", "ppo", "dpo", "best-of-n"]):
        rs = [r for r in records if r["method"] == method]
        if not rs:
            continue
        ax.scatter([r["kl"] for r in rs], [r["gold"] for r in rs], s=14, alpha=0.4, color=f"C{i}")
        keys = sorted({r.get("beta", r.get("n")) for r in rs})
        means = [(statistics.mean(r["kl"] for r in rs if r.get("beta", r.get("n")) == k),
                  statistics.mean(r["gold"] for r in rs if r.get("beta", r.get("n")) == k)) for k in keys]
        label = "best-of-n (KL: upper bound)" if method == "best-of-n" else f"{method.upper()} (beta {', '.join(map(str, keys))})"
        ax.plot(*zip(*sorted(means)), "-o", color=f"C{i}", label=label)
    ax.set_xlabel("KL(pi || pi_ref), nats per response")
    ax.set_ylabel("gold reward, held-out prompts")
    ax.set_title("gold reward against KL: a beta sweep per method")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(BETAS), choices=list(BETAS))
    parser.add_argument("--betas", nargs="+", type=float, default=None, help="override every method's betas")
    sweep_arguments(parser)
    args = parser.parse_args()
    runs, records = saved_runs(OUT)
    if not args.table:
        policy, tokenizer, proxy = policy_and_proxy(args.threads)
        train_prompts, test_prompts = world.split_prompts(world.load_prompts())
        test_texts = [p.text for p in test_prompts]
        done = {(r["method"], r.get("beta", r.get("n")), r["seed"]) for r in records}
        for seed in args.seeds:
            if ("best-of-n", BON_N[0], seed) not in done:
                new = best_of_n(seed, policy, tokenizer, proxy, test_texts)
                append_run(runs, *new)
                records += new
            for method in args.methods:
                for beta in args.betas or BETAS[method]:
                    if (method, beta, seed) in done:
                        continue
                    r = run_one(method, beta, seed, policy, tokenizer, proxy, train_prompts, test_texts, args.eval_samples)
                    append_run(runs, r)
                    records.append(r)
                    print(f"{method:<5} beta {beta:<5} seed {seed}: gold {r['gold']:+.2f} (reference {r['reference_gold']:+.2f}), "
                          f"win {r['win_rate']:.0%}, KL {r['kl']:.1f}, {r['train_seconds']:.0f} s", flush=True)
    print(table(records))
    figure(records, OUT / "beta_sweep.png")
    print(f"figure: {OUT / 'beta_sweep.png'}; runs: {runs}")


if __name__ == "__main__":
    main()

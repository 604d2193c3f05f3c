"""What the benchmarks over several seeds share: running a notebook per seed, the mean ± sd cell, and for the
resumable training sweeps (beta_sweep.py, frozen_layers.py) their options, their runs.jsonl and the models they load."""
from __future__ import annotations

import statistics
from pathlib import Path


def mean_sd(values: list[float], fmt: str) -> str:
    """``mean ± sd`` of ``values`` with the format spec ``fmt`` (the sd without a sign); one value: just it."""
    if len(values) < 2:
        return format(values[0], fmt)
    return f"{format(statistics.mean(values), fmt)} ± {format(statistics.stdev(values), fmt.lstrip('+'))}"


def run_per_seed(number: str, folder: str, description: str) -> list[dict]:
    """Parse ``--seeds`` / ``--out``, run course notebook ``number`` headless once per seed (papermill, default
    parameters otherwise, a fresh artifacts folder) and return the figures each run saved to
    ``ARTIFACTS/<folder>/seed<N>.json``, one dict per seed that ran ok (a failed seed is printed, not returned)."""
    import argparse
    import json
    import os
    import tempfile
    from pathlib import Path

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="where executed copies go (default: a temp folder)")
    args = parser.parse_args()
    os.environ["RLHF_LAB_ARTIFACTS"] = tempfile.mkdtemp(prefix=f"rlhf-lab-{folder}-")   # before rlhf_lab is imported
    from rlhf_lab import course
    from rlhf_lab.paths import ARTIFACTS

    path = course.select_notebooks([number])[0]
    out = args.out or Path(tempfile.mkdtemp(prefix="rlhf-lab-executed-"))
    runs = []
    for seed in args.seeds:
        res = course.run_notebook(path, out / f"seed{seed}", {"seed": seed})
        status = "ok" if res.ok else f"FAILED: {res.error}"
        print(f"seed {seed}: {res.seconds:.0f} s (budget {res.budget:.0f} s): {status}", flush=True)
        if res.ok:
            runs.append(json.loads((ARTIFACTS / folder / f"seed{seed}.json").read_text()))
    return runs


def sweep_arguments(parser) -> None:
    """The options every resumable training sweep takes: ``--seeds``, ``--eval-samples``, ``--threads``, ``--table``."""
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--eval-samples", type=int, default=4, help="samples per held-out prompt (4: 252 comparisons)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--table", action="store_true", help="run nothing: only report the runs already saved")


def saved_runs(folder: str | Path) -> tuple[Path, list[dict]]:
    """``(folder/runs.jsonl, the runs already in it)``: a sweep appends each finished run at once (:func:`append_run`),
    so an interrupted one loses nothing and a rerun skips what is there."""
    import json

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    runs = folder / "runs.jsonl"
    return runs, ([json.loads(line) for line in runs.read_text().splitlines()] if runs.exists() else [])


def append_run(runs: Path, *rows: dict) -> None:
    """Append ``rows`` to the sweep's ``runs.jsonl``, one JSON object a line."""
    import json

    with runs.open("a") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)


def policy_and_proxy(threads: int):
    """The shipped tiny policy, its tokenizer and the course's reward model as a reward function, on ``threads``."""
    import torch

    from rlhf_lab import models, reward_model as rm

    torch.set_num_threads(threads)
    policy, tokenizer = models.load_policy()
    reward_net, reward_tokenizer = rm.default_reward_model(progress=False)

    def proxy(prompts, responses):
        return rm.score(reward_net, reward_tokenizer, prompts, responses)

    return policy, tokenizer, proxy

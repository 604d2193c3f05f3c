"""What the benchmarks that run a notebook under several seeds share: running it per seed, and the mean ± sd cell."""
from __future__ import annotations

import statistics


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

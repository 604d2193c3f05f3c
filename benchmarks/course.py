"""Course-level figures: the whole course headless, each notebook against its budget, and notebook 08's table.

    python benchmarks/course.py                 # every notebook, in order, in a fresh artifacts folder
    python benchmarks/course.py --keep-artifacts # reuse ./artifacts (what notebooks 03-07 saved before)

Runs each course notebook top to bottom with its default parameters (papermill, as ``bash scripts/course.sh``
does), prints seconds against the budget of COURSE.md, the total against the 15-minute target, and the
final evaluation table that notebook 08 writes to ``ARTIFACTS/evaluation/table.json``. By default the
notebooks run in a fresh artifacts folder, as on a new machine: notebook 03 builds the reward model,
05-07 train and save the policies that 08 compares. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

COURSE_TARGET_S = 15 * 60   # issue 6: the whole course executes headless in <= 15 min on 2 cores


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", help="prefixes such as 05 (default: all course notebooks)")
    parser.add_argument("--keep-artifacts", action="store_true", help="use the usual artifacts folder, not a fresh one")
    parser.add_argument("--out", type=Path, default=None, help="where executed copies go (default: a temp folder)")
    args = parser.parse_args()
    if not args.keep_artifacts:   # before rlhf_lab is imported: kernels and rlhf_lab.paths read it
        os.environ["RLHF_LAB_ARTIFACTS"] = tempfile.mkdtemp(prefix="rlhf-lab-course-")
    from rlhf_lab import course, evaluation
    from rlhf_lab.paths import ARTIFACTS

    out = args.out or Path(tempfile.mkdtemp(prefix="rlhf-lab-executed-"))
    paths = course.select_notebooks(args.notebooks)
    print(f"artifacts: {ARTIFACTS}\nexecuted copies: {out}\n")
    print(f"{'notebook':<28}{'seconds':>9}{'budget':>8}{'share':>7}  status")
    results, start = [], time.perf_counter()
    for path in paths:
        res = course.run_notebook(path, out)
        results.append(res)
        share = f"{res.seconds / res.budget:6.0%}" if res.budget else "     -"
        status = ("ok" if res.seconds <= (res.budget or float("inf")) else "OVER BUDGET") if res.ok \
            else f"FAILED: {res.error}"
        print(f"{res.name:<28}{res.seconds:9.1f}{res.budget or 0:8.0f}{share:>7}  {status}", flush=True)
    total = time.perf_counter() - start
    budget_total = sum(r.budget or 0 for r in results)
    print(f"{'total':<28}{total:9.1f}{budget_total:8.0f}{total / budget_total:7.0%}  "
          f"(course target {COURSE_TARGET_S} s: {'met' if total <= COURSE_TARGET_S else 'NOT met'})")
    (out / "course_benchmark.json").write_text(json.dumps(
        {"total_s": total, "notebooks": [r.__dict__ for r in results]}, indent=1))

    table = ARTIFACTS / "evaluation" / "table.json"
    if table.exists():
        rows = [evaluation.ReportRow(**row) for row in json.loads(table.read_text())]
        print(f"\nNotebook 08's table ({table}):")
        print(evaluation.format_table(rows))
    else:
        print(f"\nno evaluation table at {table} (notebook 08 writes it)")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    raise SystemExit(main())

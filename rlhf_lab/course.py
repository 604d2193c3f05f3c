"""Run, check and tidy the course notebooks.

    python -m rlhf_lab.course run            # execute every notebook headless, one summary line each
    python -m rlhf_lab.course run 03 -p seed=1   # only notebook 03, with a parameter changed
    python -m rlhf_lab.course check          # hygiene: what the tests check, as a list of problems
    python -m rlhf_lab.course fix            # strip outputs, (re)write the generated header and install cells

Conventions every course notebook follows (``check`` enforces them, ``fix`` writes the generated parts):

1. cell 0, generated (tag ``header``): the "Open in Colab" badge and navigation to the previous/next notebook;
2. cell 1, written by hand: ``# NN · Title``, what you will learn, the runtime on a laptop CPU;
3. cell 2, generated (tag ``colab-install``): installs the course in Colab, does nothing elsewhere;
4. a code cell tagged ``parameters`` (papermill) with the seed and every size a learner might change;
5. prose between code; the notebook ends with ``## Summary`` and then ``## Exercises`` (self-checks with
   ``rlhf_lab.checks.check``); solutions live in ``notebooks/solutions/NN_..._solutions.ipynb``;
6. outputs and execution counts stripped, no widget state in the metadata.

Notebooks run with the ``notebooks/`` folder as working directory; what they make goes to
``rlhf_lab.paths.ARTIFACTS``.
"""
from __future__ import annotations

import argparse
import ast
import contextlib
import json
import os
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import nbformat

from rlhf_lab.paths import REPO_ROOT

NOTEBOOKS = REPO_ROOT / "notebooks"
SOLUTIONS = NOTEBOOKS / "solutions"
#: The GitHub repository the Colab badges and the Colab install cell point to.
GITHUB_REPO = "rlhf-lab/rlhf-lab"
#: Time budget of each notebook on a 2-core CPU, in seconds (COURSE.md).
BUDGETS = {"01": 30, "02": 30, "03": 120, "04": 60, "05": 180, "06": 180, "07": 120, "08": 120, "09": 60, "10": 150, "11": 150}

BADGE = ('<a href="https://colab.research.google.com/github/{repo}/blob/main/notebooks/{name}" '
         'target="_parent"><img src="https://colab.research.google.com/assets/colab-badge.svg" '
         'alt="Open In Colab"/></a>')
INSTALL_CELL = '''\
# Colab only: fetch the course, its helper package and TRL (about a minute). Elsewhere this cell does nothing.
# Each Colab notebook runs in its own runtime, and a runtime's files vanish with it. use_drive = True keeps the
# course's artifacts (your ratings, trained policies) in your Google Drive, in MyDrive/rlhf-lab/artifacts, so
# that they survive and reach the next notebook (Colab asks once for permission). With False, a notebook that
# misses an earlier notebook's artifact says so and uses the course's shipped one instead. (Set it before the
# first run of this cell: the course reads the artifacts folder when it is first imported.)
use_drive = False
import os, sys
if "google.colab" in sys.modules:
    import importlib.metadata, subprocess
    repo = "/content/rlhf-lab"
    if not os.path.isfile(repo + "/rlhf_lab/__init__.py"):   # not cloned yet, or a clone cut short
        subprocess.run(["rm", "-rf", repo], check=True)
        subprocess.run(["git", "clone", "--depth", "1", "https://github.com/{repo}.git", repo], check=True)
    try:
        importlib.metadata.version("rlhf-lab")   # installed by an earlier run of this cell
    except importlib.metadata.PackageNotFoundError:   # not yet, or that install failed: install (again)
        keep = []   # Colab's own torch and ipywidgets stay as they are (its widgets need ipywidgets 7)
        for name in ("torch", "ipywidgets"):
            try:
                keep.append(name + "==" + importlib.metadata.version(name))
            except importlib.metadata.PackageNotFoundError:
                pass
        with open("/tmp/rlhf-lab-keep.txt", "w") as f:
            f.write("\\n".join(keep) + "\\n")
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "-c", "/tmp/rlhf-lab-keep.txt",
                        "-e", repo + "[trl]"], check=True)
    if use_drive:
        from google.colab import drive
        drive.mount("/content/drive")
        os.environ["RLHF_LAB_ARTIFACTS"] = "/content/drive/MyDrive/rlhf-lab/artifacts"
    sys.path.insert(0, repo)
    os.chdir(repo + "/{folder}")'''


def course_notebooks() -> list[Path]:
    """The course notebooks in order: ``notebooks/NN_*.ipynb``."""
    return sorted(p for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))


def solution_notebooks() -> list[Path]:
    return sorted(SOLUTIONS.glob("[0-9][0-9]_*.ipynb"))


def title_of(nb) -> str:
    """The ``# `` heading of the title cell, without the leading number (``Reward as a signal``)."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            m = re.search(r"^# +(?:\d+\s*[·.:-]\s*)?(.+)$", cell.source, flags=re.M)
            if m:
                return m.group(1).strip()
    return ""


def _header_source(path: Path, order: list[Path]) -> str:
    i = order.index(path)
    nav = [f"*rlhf-lab · notebook {i + 1} of {len(order)}*"]
    if i > 0:
        prev = order[i - 1]
        nav.insert(0, f"[‹ {prev.stem[:2]} {title_of(nbformat.read(prev, as_version=4))}]({prev.name})")
    if i + 1 < len(order):
        nxt = order[i + 1]
        nav.append(f"[{nxt.stem[:2]} {title_of(nbformat.read(nxt, as_version=4))} ›]({nxt.name})")
    return BADGE.format(repo=GITHUB_REPO, name=path.name) + "\n\n" + " · ".join(nav)


def _solution_header_source(path: Path) -> str:
    course_nb = NOTEBOOKS / path.name.replace("_solutions", "")
    title = title_of(nbformat.read(course_nb, as_version=4)) if course_nb.exists() else ""
    return (BADGE.format(repo=GITHUB_REPO, name=f"solutions/{path.name}") + "\n\n"
            + f"*rlhf-lab · solutions to* [{course_nb.stem[:2]} {title}](../{course_nb.name})")


def _tags(cell) -> list[str]:
    return list(cell.get("metadata", {}).get("tags", []))


def _strip(nb) -> None:
    for cell in nb.cells:
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    for key in ("widgets", "papermill"):
        nb.metadata.pop(key, None)


def fix_notebook(path: Path, order: list[Path] | None = None) -> bool:
    """Strip outputs; write the generated header and install cells (safe to re-run). True if the file changed."""
    before = path.read_text()
    nb = nbformat.read(path, as_version=4)
    _strip(nb)
    solution = path.name.endswith("_solutions.ipynb")
    if order is not None and path in order or solution:
        source = _solution_header_source(path) if solution else _header_source(path, order)
        header = nbformat.v4.new_markdown_cell(source, metadata={"tags": ["header"]})
        folder = "notebooks/solutions" if solution else "notebooks"
        install = nbformat.v4.new_code_cell(INSTALL_CELL.format(repo=GITHUB_REPO, folder=folder),
                                            metadata={"tags": ["colab-install"]})
        cells = [c for c in nb.cells if not {"header", "colab-install"} & set(_tags(c))]
        # keep existing cell ids so git diffs stay small
        for new, tag in ((header, "header"), (install, "colab-install")):
            old = next((c for c in nb.cells if tag in _tags(c)), None)
            if old is not None and "id" in old:
                new["id"] = old["id"]
        nb.cells = [header, cells[0], install, *cells[1:]] if cells else [header, install]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.metadata["language_info"] = {"name": "python"}
    after = nbformat.writes(nb) + "\n"
    if after != before:
        path.write_text(after)
        return True
    return False


def check_notebook(path: Path, course: bool = True) -> list[str]:
    """Hygiene problems of one notebook, as ``path: what is wrong`` lines (empty when clean)."""
    problems: list[str] = []
    rel = path.relative_to(REPO_ROOT) if path.is_relative_to(REPO_ROOT) else path

    def bad(msg: str) -> None:
        problems.append(f"{rel}: {msg}")

    try:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - report any unreadable notebook the same way
        return [f"{rel}: not a valid notebook ({exc})"]
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "code" and (cell.outputs or cell.execution_count is not None):
            bad(f"cell {i} has outputs or an execution count (run `python -m rlhf_lab.course fix`)")
            break
    if "widgets" in nb.metadata:
        bad("widget state saved in the metadata (run `python -m rlhf_lab.course fix`)")
    if not title_of(nb):
        bad("no title cell (a markdown cell starting with '# ')")
    cells = nb.cells
    if not course:   # a solutions notebook: a Colab badge and install cell too, so that it opens there
        if not cells or "header" not in _tags(cells[0]) or f"notebooks/solutions/{path.name}" not in cells[0].source:
            bad("cell 0 is not the generated header with this notebook's Colab badge (run `python -m rlhf_lab.course fix`)")
        if not any("colab-install" in _tags(c) and "google.colab" in c.source for c in cells):
            bad("no Colab-only install cell (tag 'colab-install'; run `python -m rlhf_lab.course fix`)")
        return problems
    if not cells or "header" not in _tags(cells[0]) or "colab.research.google.com" not in cells[0].source \
            or f"notebooks/{path.name}" not in cells[0].source:
        bad("cell 0 is not the generated header with this notebook's Colab badge (run `python -m rlhf_lab.course fix`)")
    if len(cells) < 2 or cells[1].cell_type != "markdown" or not cells[1].source.lstrip().startswith("# "):
        bad("cell 1 is not the title cell ('# NN · Title' and what you will learn)")
    install = [c for c in cells if "colab-install" in _tags(c)]
    if not install or "google.colab" not in install[0].source:
        bad("no Colab-only install cell (tag 'colab-install')")
    params = [c for c in cells if "parameters" in _tags(c)]
    if len(params) != 1 or params[0].cell_type != "code":
        bad("needs exactly one code cell tagged 'parameters' (papermill)")
    else:
        try:
            names = [t.id for n in ast.parse(params[0].source).body if isinstance(n, ast.Assign) for t in n.targets
                     if isinstance(t, ast.Name)]
        except SyntaxError as exc:
            names = []
            bad(f"the parameters cell does not parse: {exc}")
        if "seed" not in names:
            bad("the parameters cell does not set `seed`")
    headings = [m.group(1).strip() for c in cells if c.cell_type == "markdown"
                for m in re.finditer(r"^## +(.+)$", c.source, flags=re.M)]
    if headings[-2:] != ["Summary", "Exercises"]:
        bad(f"must end with '## Summary' then '## Exercises' (last level-2 headings: {headings[-2:]})")
    solution = SOLUTIONS / f"{path.stem}_solutions.ipynb"
    if not solution.exists():
        bad(f"no solutions notebook {solution.relative_to(REPO_ROOT)}")
    return problems


def check_all() -> list[str]:
    problems = [p for nb in course_notebooks() for p in check_notebook(nb)]
    problems += [p for nb in solution_notebooks() for p in check_notebook(nb, course=False)]
    return problems


@dataclass
class RunResult:
    name: str
    seconds: float
    ok: bool
    budget: float | None
    error: str = ""


KERNEL_NOISE = "Kernel is running over TCP without encryption"   # ipykernel's warning on every local kernel start


@contextlib.contextmanager
def _stderr_without(noise: str):
    """Collect what is written to file descriptor 2 (this process and the kernels it starts) and pass it on,
    without the lines containing ``noise``, when the block ends."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as collected:
        os.dup2(collected.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            collected.seek(0)
            kept = [line for line in collected.read().decode(errors="replace").splitlines(keepends=True) if noise not in line]
            sys.stderr.write("".join(kept))
            sys.stderr.flush()


def run_notebook(path: Path, out_dir: Path, parameters: dict | None = None) -> RunResult:
    """Execute one notebook with papermill (cwd = its folder) into ``out_dir``; never raises for a failing notebook."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    error = ""
    try:
        with _stderr_without(KERNEL_NOISE):
            pm.execute_notebook(str(path), str(out_dir / path.name), parameters=parameters or {},
                                cwd=str(path.parent), progress_bar=False, kernel_name="python3")
    except Exception as exc:  # noqa: BLE001 - papermill raises PapermillExecutionError and kernel errors
        if hasattr(exc, "ename") and hasattr(exc, "cell_index"):   # an exception raised in a cell
            error = f"{exc.ename} in cell {exc.cell_index}" + (f": {exc.evalue}" if str(exc.evalue).strip() else "")
        else:
            error = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
    return RunResult(path.stem, time.perf_counter() - start, not error, BUDGETS.get(path.name[:2]), error)


def select_notebooks(names: list[str]) -> list[Path]:
    order = course_notebooks()
    if not names:
        return order
    chosen = []
    for name in names:
        hits = [p for p in order + solution_notebooks() if p.name.startswith(name) or p.stem == name or str(p) == name]
        if not hits:
            raise SystemExit(f"no notebook matches {name!r}; notebooks are: {', '.join(p.stem for p in order)}")
        chosen.extend(hits[:1])
    return chosen


def _parse_parameters(items: list[str]) -> dict:
    params = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"-p takes name=value, got {item!r}")
        try:
            params[key] = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            params[key] = value
    return params


class Expression(str):
    """A parameter default that is not a literal (``ARTIFACTS / "ratings"``, ``"cuda" if ... else "cpu"``): its source."""

    def __repr__(self) -> str:
        return str(self)


def notebook_parameters(path: Path) -> dict[str, object]:
    """The names set in a notebook's ``parameters`` cell, each with its default: the value where the cell
    assigns a literal, else the expression's source text (an :class:`Expression`)."""
    nb = nbformat.read(path, as_version=4)
    cells = [c for c in nb.cells if "parameters" in _tags(c)]
    if not cells:
        return {}
    source = cells[0].source
    out: dict[str, object] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    try:
                        out[target.id] = ast.literal_eval(node.value)
                    except ValueError:
                        out[target.id] = Expression(ast.get_source_segment(source, node.value))
    return out


def check_parameters(path: Path, params: dict) -> list[str]:
    """Problems with ``params`` for the notebook at ``path``: names its parameters cell does not set, and values
    of another type than the default's (an int where a float is expected is fine; None defaults take anything)."""
    known = notebook_parameters(path)
    problems = []
    for name, value in params.items():
        if name not in known:
            problems.append(f"{path.stem} has no parameter {name!r}")
            continue
        default = known[name]
        if default is None or value is None or isinstance(default, Expression):
            continue   # an expression default (a path, a device) or None: any value may stand in
        ok = isinstance(value, type(default)) or (isinstance(default, float) and isinstance(value, int)
                                                  and not isinstance(value, bool))
        if isinstance(default, bool) != isinstance(value, bool):
            ok = False
        if not ok:
            problems.append(f"{path.stem}: {name}={value!r} has type {type(value).__name__}, its default {default!r} "
                            f"has type {type(default).__name__}")
    return problems


def _parameter_list(path: Path) -> str:
    return "\n".join(f"  {name} = {value!r}" for name, value in notebook_parameters(path).items())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhf_lab.course", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute notebooks headless with papermill")
    run.add_argument("notebooks", nargs="*", help="prefixes such as 01 or 03_reward; default: all course notebooks")
    run.add_argument("--out", type=Path, default=REPO_ROOT / "build" / "notebooks", help="where executed copies go")
    run.add_argument("-p", "--parameter", action="append", default=[], help="name=value for the parameters cell")
    sub.add_parser("check", help="list hygiene problems (exit 1 if any)")
    sub.add_parser("fix", help="strip outputs and (re)write generated cells")
    args = parser.parse_args(argv)

    if args.command == "check":
        problems = check_all()
        print("\n".join(problems) if problems else f"{len(course_notebooks())} notebooks clean")
        return 1 if problems else 0
    if args.command == "fix":
        order = course_notebooks()
        for path in order + solution_notebooks():
            if fix_notebook(path, order):
                print(f"fixed {path.relative_to(REPO_ROOT)}")
        return 0

    paths = select_notebooks(args.notebooks)
    params = _parse_parameters(args.parameter)
    for path in paths:
        problems = check_parameters(path, params)
        if problems:
            print("\n".join(problems) + f"\n{path.stem}'s parameters (name = default):\n{_parameter_list(path)}",
                  file=sys.stderr)
            return 2
    results = []
    total = time.perf_counter()
    for path in paths:
        res = run_notebook(path, args.out, params)
        results.append(res)
        budget = f"(budget {res.budget:.0f} s)" if res.budget else ""
        status = "ok" if res.ok else f"FAILED: {res.error}"
        print(f"{res.name:<32} {res.seconds:7.1f} s {budget:<15} {status}", flush=True)
    failed = sum(not r.ok for r in results)
    print(f"{len(results) - failed} ok, {failed} failed in {time.perf_counter() - total:.0f} s; "
          f"executed copies in {args.out}")
    (args.out / "course_run.json").write_text(json.dumps([asdict(r) for r in results], indent=1))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

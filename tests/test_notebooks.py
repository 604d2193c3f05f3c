"""The notebook harness: hygiene of every notebook, a papermill run with non-default parameters,
and proof that a notebook which raises fails the test command.

Each course notebook is executed once here with papermill, with its default parameters, in course order;
nbval (``--nbval-lax`` in pyproject.toml) executes the solution notebooks. New notebooks are picked up by the glob.
"""
from __future__ import annotations

import subprocess
import sys

import nbformat
import pytest

from rlhf_lab import course

COURSE = course.course_notebooks()
SOLUTIONS = course.solution_notebooks()


def test_there_are_notebooks():
    assert COURSE, "no notebooks/NN_*.ipynb found"
    assert COURSE[0].name == "01_reward_as_a_signal.ipynb"


@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_course_notebook_hygiene(path):
    assert course.check_notebook(path) == []


@pytest.mark.parametrize("path", SOLUTIONS, ids=lambda p: p.stem)
def test_solution_notebook_hygiene(path):
    assert course.check_notebook(path, course=False) == []


def test_generated_cells_are_up_to_date(tmp_path):
    """`course fix` is idempotent and has been run: fixing a copy changes nothing."""
    import shutil

    for path in COURSE:
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        order = [copy if p == path else p for p in COURSE]
        assert not course.fix_notebook(copy, order), f"{path.name}: run `python -m rlhf_lab.course fix`"
    for path in SOLUTIONS:   # the solutions have their own badge and install cell, so that they open in Colab
        copy = tmp_path / path.name
        shutil.copy(path, copy)
        assert not course.fix_notebook(copy, COURSE), f"{path.name}: run `python -m rlhf_lab.course fix`"
        cells = nbformat.read(copy, as_version=4).cells
        assert f"notebooks/solutions/{path.name}" in cells[0].source and "notebooks/solutions" in cells[2].source


@pytest.mark.notebook
@pytest.mark.parametrize("path", COURSE, ids=lambda p: p.stem)
def test_notebook_runs_top_to_bottom_with_its_defaults(path, tmp_path, notebook_times):
    """Each course notebook once, in course order, with its default parameters, as a learner runs it.

    The artifacts folder is shared by the whole test session (tests/conftest.py), so notebook 05 finds the
    reward model notebook 03 saved and notebook 08 the policies of 05-07, exactly as on a learner's machine.
    The run time is reported against the notebook's budget at the end of the session (not asserted: CI
    machines differ in speed; benchmarks/course.py is the measurement).
    """
    result = course.run_notebook(path, tmp_path, {})
    notebook_times.append(result)
    assert result.ok, f"{path.name} failed: {result.error}"


@pytest.mark.notebook
@pytest.mark.parametrize("path", [p for p in COURSE if p.name.startswith(("02", "05"))], ids=lambda p: p.stem)
def test_the_parameters_cell_takes_another_seed(path, tmp_path):
    """papermill injects parameters after the tagged cell; the quickest notebook, and notebook 05 (the RL
    notebook with the most checked claims), also run with seed=1: their claims must hold under it too."""
    result = course.run_notebook(path, tmp_path, {"seed": 1})
    assert result.ok, f"{path.name} failed with seed=1: {result.error}"
    executed = nbformat.read(tmp_path / path.name, as_version=4)
    injected = [c for c in executed.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert injected and "seed = 1" in injected[0].source


def _bad_notebook(tmp_path):
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_code_cell("x = 1"),
        nbformat.v4.new_code_cell("raise RuntimeError('this notebook is broken on purpose')"),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "broken.ipynb"
    nbformat.write(nb, path)
    return path


def test_a_notebook_that_raises_fails_the_test_command(tmp_path):
    path = _bad_notebook(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "pytest", "--nbval-lax", "-p", "no:cacheprovider", "-q",
                           "--rootdir", str(tmp_path), str(path)],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode != 0, proc.stdout
    assert "broken on purpose" in proc.stdout
    result = course.run_notebook(path, tmp_path / "out", {})
    assert not result.ok and "broken on purpose" in result.error
    assert result.error.startswith("RuntimeError in cell 1")       # the exception type and the cell that raised it


def test_hygiene_check_catches_outputs_and_missing_parts(tmp_path):
    nb = nbformat.read(COURSE[0], as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    code[-1].outputs = [nbformat.v4.new_output("stream", text="left over")]
    nb.cells = [c for c in nb.cells if "parameters" not in c.metadata.get("tags", [])]
    path = tmp_path / COURSE[0].name
    nbformat.write(nb, path)
    problems = "\n".join(course.check_notebook(path))
    assert "outputs" in problems and "parameters" in problems


def test_readme_lists_every_notebook_with_its_colab_badge():
    readme = (course.REPO_ROOT / "README.md").read_text()
    for path in COURSE:
        assert f"(notebooks/{path.name})" in readme, f"README does not link {path.name}"
        assert f"blob/main/notebooks/{path.name})" in readme, f"README has no Colab badge for {path.name}"
    assert "bash scripts/course.sh" in readme and "bash scripts/test.sh" in readme


def test_ci_calls_the_readme_test_command():
    ci = (course.REPO_ROOT / ".ci" / "run").read_text()
    assert "bash scripts/test.sh" in ci


@pytest.mark.notebook
def test_notebook_02_pools_a_teachers_folder_of_student_files(tmp_path):
    """The teacher's cell: three students' files in ``class_folder`` are pooled and reported, one row per rater."""
    from rlhf_lab import agreement, world
    from rlhf_lab.preferences import PreferenceStore

    folder = tmp_path / "class"
    pairs = world.make_pairs(world.load_prompts(), 12, seed=5)
    students = agreement.simulated_class(3, seed=1, contrarians=0)
    for record in agreement.class_ratings(students, pairs, per_rater=10, seed=1):
        PreferenceStore(folder / f"{record.rater}.jsonl").append(record)
    path = next(p for p in COURSE if p.name.startswith("02"))
    result = course.run_notebook(path, tmp_path / "out", {"class_folder": str(folder)})
    assert result.ok, result.error
    executed = nbformat.read(tmp_path / "out" / path.name, as_version=4)
    text = "".join(o.get("text", "") for c in executed.cells if c.cell_type == "code" for o in c.outputs)
    assert "pooled 30 ratings by 3 raters from 3 files" in text
    assert all(f"student-0{i}" in text for i in (1, 2, 3))

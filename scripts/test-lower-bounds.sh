#!/usr/bin/env bash
# The declared lower bounds, tested: a separate venv (build/venv-lower-bounds) with the oldest versions that
# pyproject.toml and requirements.txt allow (constraints/lower-bounds.txt), then the unit tests and notebooks
# 01-02 on them. TRL, JupyterLab and Playwright are left out (TRL's current release needs a newer transformers;
# the tests that use it skip). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=build/venv-lower-bounds
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c constraints/lower-bounds.txt torch transformers tokenizers numpy matplotlib \
  ipywidgets tqdm ipykernel "papermill>=2.6" "nbformat>=5.10" "pytest>=8.0" "nbval>=0.11" scikit-learn krippendorff
"$VENV/bin/python" -m pip install -q --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
print("lower bounds:", ", ".join(f"{n} {md.version(n)}" for n in
      ("torch", "transformers", "tokenizers", "numpy", "matplotlib", "ipywidgets", "tqdm")))
PY
export HF_HUB_OFFLINE=1
"$VENV/bin/python" -m pytest -m quick -q -W ignore::DeprecationWarning "$@"
RLHF_LAB_ARTIFACTS="$(mktemp -d)" "$VENV/bin/python" -m rlhf_lab.course run 01 02 --out build/notebooks-lower-bounds

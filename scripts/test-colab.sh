#!/usr/bin/env bash
# Colab's set, tested (issue 15): a separate venv (build/venv-colab) on Python 3.12 with transformers 4.x,
# ipywidgets 7.7.1 and TRL (constraints/colab.txt), then every unit test (the quick profile) and every course
# notebook on it, headless. torch for Python 3.12 comes from PyPI as its CUDA build (about 4.5 GB in the venv, a
# minute to install; it runs on the CPU). PYTHON312 names the interpreter (default: python3.12 on PATH, else pyenv's 3.12).
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
# a python3.12 that runs (a pyenv shim on PATH may not, when 3.12 is not the active version), else pyenv's 3.12
PYTHON=${PYTHON312:-}
if [ -z "$PYTHON" ]; then
  for candidate in python3.12 "$(pyenv root 2>/dev/null)"/versions/3.12*/bin/python3.12; do
    if "$candidate" -c "import sys; assert sys.version_info[:2] == (3, 12)" >/dev/null 2>&1; then
      PYTHON=$candidate
      break
    fi
  done
fi
if [ -z "$PYTHON" ]; then
  echo "test-colab.sh: no Python 3.12 interpreter found (python3.12 or pyenv's); set PYTHON312 to one" >&2
  exit 1
fi
VENV=build/venv-colab
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q -c constraints/colab.txt torch transformers tokenizers numpy matplotlib \
  ipywidgets tqdm ipykernel "papermill>=2.6" "nbformat>=5.10" "pytest>=8.0" "nbval>=0.11" scikit-learn krippendorff \
  trl
"$VENV/bin/python" -m pip install -q --no-deps -e .
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md, platform, sys
if sys.version_info[:2] != (3, 12):
    sys.exit(f"expected Python 3.12, the venv runs {platform.python_version()}")
print(f"Colab's set: Python {platform.python_version()},",
      ", ".join(f"{n} {md.version(n)}" for n in ("torch", "transformers", "tokenizers", "numpy", "matplotlib",
                                                  "ipywidgets", "tqdm", "trl")))
PY
export HF_HUB_OFFLINE=1
"$VENV/bin/python" -m pytest -m quick -q -W ignore::DeprecationWarning "$@"
RLHF_LAB_ARTIFACTS="$(mktemp -d)" "$VENV/bin/python" -m rlhf_lab.course run --out build/notebooks-colab
"$VENV/bin/python" - <<'PY'
import json, pathlib, sys
versions = {json.loads(p.read_text())["metadata"]["language_info"]["version"][:4]
            for p in pathlib.Path("build/notebooks-colab").glob("*.ipynb")}
if versions != {"3.12"}:
    sys.exit(f"the notebooks ran on Python {sorted(versions)}, not on the Colab venv's 3.12")
print("the notebooks' kernel: Python 3.12")
PY

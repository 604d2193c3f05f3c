#!/usr/bin/env bash
# The widget tests under ipywidgets 7.7.1, the version Colab ships (the full suite runs under the current 8.x).
# ipywidgets 7.7.1 goes into build/ipywidgets-7.7.1 and is put in front of the venv's own on PYTHONPATH, so the
# venv is left as it is. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh >/dev/null
TARGET=build/ipywidgets-7.7.1
if ! [ -f "$TARGET/ipywidgets/__init__.py" ]; then
  rm -rf "$TARGET"
  .venv/bin/python -m pip install -q --no-deps --target "$TARGET" ipywidgets==7.7.1 ipython_genutils==0.2.0
fi
PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" .venv/bin/python - <<'PY'
import ipywidgets, sys
if ipywidgets.__version__ != "7.7.1":
    sys.exit(f"expected ipywidgets 7.7.1, imported {ipywidgets.__version__} from {ipywidgets.__file__}")
print(f"ipywidgets {ipywidgets.__version__} from {ipywidgets.__file__}")
PY
PYTHONPATH="$TARGET${PYTHONPATH:+:$PYTHONPATH}" exec .venv/bin/python -m pytest -q -W ignore::DeprecationWarning \
  tests/test_widgets.py "$@"

#!/usr/bin/env bash
# Create .venv (if it is not there yet) and install the course into it. Safe to re-run.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" - <<'PY'
import sys
if sys.version_info < (3, 11):
    sys.exit(f"rlhf-lab needs Python 3.11 or newer; {sys.executable} is {sys.version.split()[0]}. "
             "Set PYTHON=/path/to/python3.11 and run again.")
PY
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
echo "Installing into .venv (the first time takes a few minutes) ..."
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -r requirements.txt -e .

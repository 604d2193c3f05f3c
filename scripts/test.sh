#!/usr/bin/env bash
# Install (if needed) and run the test suite: unit tests, every course notebook (papermill), the solutions (nbval), the browser test.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh tests/test_bandit.py`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"

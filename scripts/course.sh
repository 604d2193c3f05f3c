#!/usr/bin/env bash
# Install (if needed) and run every course notebook headless; executed copies go to build/notebooks/.
# Extra arguments go to `python -m rlhf_lab.course run`, e.g. `bash scripts/course.sh 03 -p seed=1`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export HF_HUB_DISABLE_TELEMETRY=1   # no usage telemetry from huggingface_hub (TRL, datasets)
exec .venv/bin/python -m rlhf_lab.course run "$@"

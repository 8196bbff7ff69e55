#!/usr/bin/env bash
# The GPU check, ready for a lent GPU machine (issue 45): the project's tests that touch devices, then demo and
# converted full-size predictions timed in fp32 / bf16 / fp16, 1 and several processes (bench/gpu_check.py),
# into bench/results/gpu_check.json and docs/benchmarks.md. Sized for under 8 minutes on one H100.
#   bash scripts/gpu_check.sh            # DRY_RUN=1: print the commands only (works on a CPU machine)
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "${DRY_RUN:-0}" = 1 ]; then
    exec python bench/gpu_check.py --dry-run
fi
python -m pytest -q -x tests/test_serving.py tests/test_predict_runs.py tests/test_precision.py
python bench/gpu_check.py "$@"

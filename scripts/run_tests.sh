#!/usr/bin/env bash
# The test command (README, .ci/run): its own venv ($VENV, default .venv-tests, apart from the .venv you
# use, which it never touches) with the CPU torch wheel, the project's test extras (pytest, ruff, Gradio,
# Playwright) and panopticapi's own evaluation code (the tests' reference), Debian's chromium for the app's
# browser test when it is missing (Playwright cannot download browsers here), then pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${VENV:-.venv-tests}
if ! command -v chromium >/dev/null; then
    as_root=$([ "$(id -u)" = 0 ] || echo sudo)
    $as_root apt-get update -q && $as_root apt-get install -y -q chromium
fi
python3 -m venv "$VENV"
. "$VENV/bin/activate"
python -m pip install -q --upgrade pip
pip install -q torch==2.13.0
pip install -q -e ".[test]"
pip install -q --no-deps panopticapi-lite  # the official evaluation code, a test-only reference
python -m pytest -q "$@"

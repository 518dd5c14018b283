#!/usr/bin/env bash
# The test command (README and CI run exactly this): lint, then the whole suite, on the installed .venv.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
ruff check .
python -m pytest "$@"

#!/usr/bin/env bash
# Create .venv and install kret with the verified versions (constraints.txt). CPU torch first: a plain
# `torch` requirement would pull a multi-GB CUDA build. Idempotent: re-running only fills in what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip
python -m pip install -q -c constraints.txt "torch==2.13.0"
python -m pip install -q -c constraints.txt -e ".[dev,langchain,train,plot]"
echo "kret installed in .venv ($(python -c 'import kret; print(kret.__version__)'))"

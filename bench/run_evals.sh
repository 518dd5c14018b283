#!/usr/bin/env bash
# Reproduce bench/README.md's retrieval tables: every dataset x mode through `kret eval` (the corpus is
# indexed once per dataset and model, then only queried). Usage: bash bench/run_evals.sh [DATASET...]
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export KRET_HOME=${KRET_HOME:-$PWD/.kret/bench-home}
SHARED=${SHARED:-../shared/data/bench}
mkdir -p bench/out
for ds in "${@:-korquad-dev miracl-ko-mini korquad-dev-hard}"; do
  for ds1 in $ds; do
    for mode in sparse dense hybrid; do
      out=bench/out/$ds1.$mode.json
      [ -s "$out" ] && { echo "have $out"; continue; }
      echo "== $ds1 $mode"
      kret eval "$SHARED/$ds1" --mode "$mode" --out "$out" > "bench/out/$ds1.$mode.log" 2>&1
    done
  done
done

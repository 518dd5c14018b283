#!/usr/bin/env bash
# Fusion study behind bench/README.md §2b: hybrid variants on an already indexed dataset (query-only runs).
# Usage: bash bench/tune_fusion.sh DATASET   (reports in bench/out/tune/)
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
export KRET_HOME=${KRET_HOME:-$PWD/.kret/bench-home}
ds=$1
run() { name=$1; shift; out=bench/out/tune/$ds.$name.json; [ -s "$out" ] || kret eval "../shared/data/bench/$ds" --mode hybrid "$@" --out "$out" > "bench/out/tune/$ds.$name.log" 2>&1; }
run rrf-s2 --sparse-weight 2
run rrf-s3 --sparse-weight 3
run dbsf --fusion dbsf
run rrf-d0.5-p200 --dense-weight 0.5 --prefetch-k 200

#!/usr/bin/env bash
# The test command (README and CI run exactly this): lint, type-check the public API (scripts/typecheck.sh,
# ~15 s), then the two test lanes on the installed .venv:
#   fast  unit + contract tests with the tiny random model (`pytest` alone runs this lane)
#   slow  the real default model end to end and the cheapest benchmark regression (`pytest -m slow`)
# Each lane's wall time is printed. Extra arguments go to both pytest runs (e.g. -x, -k NAME); run one lane
# with KRET_TEST_LANES=fast or KRET_TEST_LANES=slow.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
ruff check .
bash scripts/typecheck.sh
status=0
for lane in ${KRET_TEST_LANES:-fast slow}; do
  case $lane in
    fast) marker="not slow" ;;
    slow) marker="slow" ;;
    *) echo "unknown lane: $lane (fast or slow)" >&2; exit 2 ;;
  esac
  start=$SECONDS
  rc=0
  python -m pytest -m "$marker" "$@" || rc=$?
  [ "$rc" -eq 5 ] && rc=0  # "no tests collected": a -k that selects nothing in this lane
  echo "lane $lane: $((SECONDS - start)) s (exit $rc, load $(cut -d' ' -f1 /proc/loadavg))"
  [ "$rc" -ne 0 ] && status=$rc
done
exit $status

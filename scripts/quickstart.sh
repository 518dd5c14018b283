#!/usr/bin/env bash
# Fresh machine to first search: install, build the default model offline, index the sample folder, search.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
. .venv/bin/activate
export KRET_HOME=${KRET_HOME:-$PWD/.kret/home}
kret models pull
kret index samples/ko --collection samples
kret search "한글은 누가 만들었나요?" --collection samples -k 3
kret search "김장 문화가 등재된 곳" --collection samples -k 3

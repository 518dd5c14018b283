#!/usr/bin/env bash
# Type-check kret's public API with mypy (config: [tool.mypy] in pyproject.toml).
#
# kret's subpackages live in top-level folders (engine/, indexer/, ...) that setuptools maps to kret.engine,
# kret.indexer, ...; the editable install resolves them with an import hook mypy cannot follow. So this script
# lays out the import tree mypy expects as symlinks under build/typecheck (ignored by git, rebuilt each run)
# and checks the modules named in pyproject.toml there. Errors are reported for those modules only; what
# they import is read for its types (follow_imports = silent).
set -euo pipefail
cd "$(dirname "$0")/.."
[ -z "${VIRTUAL_ENV:-}" ] && [ -f .venv/bin/activate ] && . .venv/bin/activate
tree=build/typecheck
rm -rf "$tree"
mkdir -p "$tree/kret"
for f in kret/*; do ln -s "$PWD/$f" "$tree/kret/$(basename "$f")"; done
for pkg in engine indexer trainer evaluators cli; do ln -s "$PWD/$pkg" "$tree/kret/$pkg"; done
MYPY=${MYPY:-mypy}
MYPYPATH="$PWD/$tree" "$MYPY" --python-executable "$(command -v python)" "$@"

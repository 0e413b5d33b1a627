#!/usr/bin/env bash
# Static checks CI runs before the tests: ruff on the whole tree, then the import contracts of pyproject.toml
# ([tool.importlinter]: the floors core <- prompts <- agents <- artifacts | scaleout <- graphs <- evals <- app, and no LLM framework in
# the core), then mypy ([tool.mypy]). The package's folders are mapped into one import name, so lint-imports and
# mypy read an installed copy.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
.venv/bin/ruff check .
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
# install a copy of the checkout (tracked and not-ignored files), so no build/ folder is left in the tree
mkdir "$stage/src"
git ls-files -z -co --exclude-standard | tar --null -T - --ignore-failed-read -cf - 2>/dev/null | tar -xf - -C "$stage/src"
.venv/bin/python -m pip install -q --disable-pip-version-check --no-deps --no-build-isolation --target "$stage/site" \
  "$stage/src" >"$stage/pip.log" 2>&1 || { cat "$stage/pip.log" >&2; exit 1; }
root=$PWD
(cd "$stage" && PYTHONPATH="$stage/site" "$root/.venv/bin/lint-imports" --no-cache "$root/pyproject.toml")
# the type checker over the same installed copy (only the package: not tests/ or evals/scripts/), [tool.mypy] settings
(cd "$stage/site" && "$root/.venv/bin/mypy" --config-file "$root/pyproject.toml" --no-incremental -p synalign)

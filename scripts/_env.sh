# Sourced by scripts/demo.sh and scripts/test.sh: create .venv once, (re)install only when pyproject.toml changed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "synalign: creating .venv" >&2
  "$PY" -m venv .venv
fi
stamp=.venv/.synalign-installed
want=$(cat pyproject.toml scripts/_env.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null || true)" != "$want" ]; then
  echo "synalign: installing dependencies into .venv (first run takes a minute or two)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
  # CPU-only torch: an unpinned torch would pull several GB of CUDA packages.
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0+cpu" \
    || .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0+cpu" \
         --extra-index-url https://download.pytorch.org/whl/cpu
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[test]"
  echo "$want" > "$stamp"
fi

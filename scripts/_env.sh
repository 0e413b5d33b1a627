# Sourced by scripts/demo.sh and scripts/test.sh: create .venv once, (re)install only when pyproject.toml changed
# or more extras are wanted, build the local LM server once (llama.cpp's llama-server, cached in ~/.cache/synalign;
# ~6 min on 2 cores). SYNALIGN_EXTRAS picks the extras: "llm,hf" for the main job (scripts/demo.sh: no test tools,
# no Ray, no evaluation extras), "test" (the default) for the test suite, which includes everything.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
export LITELLM_LOCAL_MODEL_COST_MAP=True
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "synalign: creating .venv" >&2
  "$PY" -m venv .venv
fi
extras=${SYNALIGN_EXTRAS:-test}
stamp=.venv/.synalign-installed
want=$(cat pyproject.toml scripts/_env.sh | sha256sum | cut -d' ' -f1)
have=$(cat "$stamp" 2>/dev/null || true)
# up to date: same pyproject and the wanted extras (or "test", which includes every extra) already installed
if [ "$have" != "$want $extras" ] && [ "$have" != "$want test" ]; then
  echo "synalign: installing dependencies into .venv (first run takes a minute or two)" >&2
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip setuptools wheel
  # CPU-only torch: an unpinned torch would pull several GB of CUDA packages.
  .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0+cpu" \
    || .venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0+cpu" \
         --extra-index-url https://download.pytorch.org/whl/cpu
  .venv/bin/python -m pip install -q --disable-pip-version-check -e ".[$extras]"
  echo "$want $extras" > "$stamp"
fi
# The embedded local LM (--llm local): llama-server built from source once, then reused (a no-op when cached).
if ! .venv/bin/synalign local-lm status >/dev/null 2>&1; then
  echo "synalign: building the local LM server once (llama.cpp llama-server, about 6 minutes on 2 cores)" >&2
  .venv/bin/synalign local-lm build
fi

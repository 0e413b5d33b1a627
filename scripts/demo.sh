#!/usr/bin/env bash
# Install everything (idempotent) and run the main job on the bundled real SST-2 sample (offline backend).
source "$(dirname "${BASH_SOURCE[0]}")/_env.sh"
out=${1:-runs/demo}
flag=()
[ -f "$out/config.json" ] && flag=(--overwrite)
exec .venv/bin/synalign run --data synalign/data/sst2-demo --out "$out" "${flag[@]}"

#!/usr/bin/env bash
# Set up, write the demo corpus and extract it into out/demo.zarr (the summary describes it).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f data/demo/metadata.csv ] || .venv/bin/tts-extract demo data/demo
.venv/bin/tts-extract run data/demo out/demo.zarr --overwrite "$@"


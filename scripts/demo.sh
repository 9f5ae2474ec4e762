#!/usr/bin/env bash
# Set up, write the demo corpus, extract it into out/demo.zarr and describe the store.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
[ -f data/demo/metadata.csv ] || .venv/bin/tts-extract demo data/demo
.venv/bin/tts-extract run data/demo out/demo.zarr --overwrite "$@"
.venv/bin/tts-extract inspect out/demo.zarr

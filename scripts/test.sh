#!/usr/bin/env bash
# Set up and run the test suite (CPU only; Triton kernels, if any, run interpreted), in $VENV
# (default .venv) with $PYTHON (default python3), as scripts/setup.sh makes it.
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${VENV:-.venv}
bash scripts/setup.sh test
# The loader's oldest supported torch, numpy and zarr (pyproject's floors) and nothing else but
# google-crc32c, as the README's training install has it (without it numcodecs >= 0.16.4 warns on
# import) (tests/test_loader_compat.py; a CUDA build of torch 2.4.1, about 5 GB, made once).
old=.venv-torch2.4
oldest=(torch==2.4.1 numpy==1.26.4 zarr==3.1.1)
if ! "$old/bin/python" - "${oldest[@]}" 2>/dev/null <<'EOF'
import sys
from importlib.metadata import version
import google_crc32c, torch, zarr     # installed, and importable
sys.exit(any(version(name) != want for name, want in (pin.split("==") for pin in sys.argv[1:])))
EOF
then
  rm -rf "$old"
  "${PYTHON:-python3}" -m venv "$old"
  "$old/bin/python" -m pip install -qq "${oldest[@]}" google-crc32c
fi
TTS_EXTRACT_LOADER_PYTHON="$PWD/$old/bin/python" "$venv/bin/python" -m pytest -q "$@"

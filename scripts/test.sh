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
oldest="torch==2.4.1 numpy==1.26.4 zarr==3.1.1 google-crc32c"
if ! "$old/bin/python" -c "import torch, numpy, zarr, google_crc32c
assert f'{numpy.__version__} {zarr.__version__}' == '1.26.4 3.1.1'" 2>/dev/null; then
  rm -rf "$old"
  "${PYTHON:-python3}" -m venv "$old"
  "$old/bin/python" -m pip install -qq $oldest
fi
TTS_EXTRACT_LOADER_PYTHON="$PWD/$old/bin/python" "$venv/bin/python" -m pytest -q "$@"

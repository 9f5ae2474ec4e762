#!/usr/bin/env bash
# Set up and run the test suite (CPU only; Triton kernels, if any, run interpreted).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh test
.venv/bin/python -m pytest -q "$@"

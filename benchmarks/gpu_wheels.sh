#!/usr/bin/env bash
# Stages in .devwheels/ what a lent GPU machine lacks for benchmarks/gpu_session.sh (see
# ../shared/gpu/README.md): DALI and the zarr stack through the shared prepare-wheels.sh, then
# what the reference tests and the librosa baseline need there: librosa and the dependencies
# that the machine's image lacks, and pyworld, which our index has no cp312 wheel of, built here
# with Python 3.12 ($PYTHON312, else python3.12 or pyenv's).
#
#     bash benchmarks/gpu_wheels.sh [path/to/prepare-wheels.sh]
set -euo pipefail
cd "$(dirname "$0")/.."
prepare=${1:-../shared/gpu/prepare-wheels.sh}
bash "$prepare" librosa==1.0.0 decorator audioread pooch platformdirs requests msgpack idna \
  charset-normalizer certifi urllib3
if ! python312=$(bash scripts/python312.sh); then
  echo "no Python 3.12 here to build pyworld's wheel: set PYTHON312" >&2
  exit 1
fi
"$python312" -m pip wheel -q --no-deps -w .devwheels/small pyworld
du -sh .devwheels/small

#!/usr/bin/env bash
# Create a virtual environment ($VENV, default .venv; Python $PYTHON, default python3: 3.11 or
# 3.12) and install tts-extract into it; `setup.sh test` adds the test extras (pytest, librosa,
# pyworld built from source, ...).
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-python3}
venv=${VENV:-.venv}
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
# -qq: errors only (a machine's pip config may name index folders it lacks: a warning per package)
"$venv/bin/python" -m pip install -qq --upgrade pip
# torchaudio 2.11 is built against torch 2.11 but does not declare it: pin the pair here.
extras=${1:+[$1]}
"$venv/bin/python" -m pip install -qq -e ".${extras}" torch==2.11.0 torchaudio==2.11.0

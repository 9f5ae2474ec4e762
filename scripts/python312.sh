#!/usr/bin/env bash
# Prints the path of a Python 3.12 ($PYTHON312, python3.12 on PATH or pyenv's); exits 1 if none.
for python in ${PYTHON312:-} python3.12 "$HOME"/.pyenv/versions/3.12*/bin/python3.12; do
  if "$python" -c 'import sys; assert sys.version_info[:2] == (3, 12)' 2>/dev/null; then
    command -v "$python"
    exit
  fi
done
exit 1

#!/usr/bin/env bash
# Everything a lent GPU machine checks, in one call (after .devwheels/small/install.sh, with the
# wheels that benchmarks/gpu_wheels.sh stages; see ../shared/gpu/README.md): the CUDA variants
# of the reference tests (features against librosa, HiFi-GAN's definition and pyworld on the
# GPU), then benchmarks/gpu_check.py. Results go to OUT_DIR: pytest_cuda.log, gpu_check.log
# and gpu_check.json.
#
#     bash benchmarks/gpu_session.sh OUT_DIR [gpu_check.py options]
set -uo pipefail
out=${1:?usage: gpu_session.sh OUT_DIR [gpu_check.py options]}
shift
cd "$(dirname "$0")/.."
mkdir -p "$out"
# no LD_LIBRARY_PATH: the job runs on CUDA without one (H200, 2026-11-29), as users run it
export PYTHONUNBUFFERED=1
# librosa's numba cache filled by one process: test workers filling it at once crashed
python3 -c 'import librosa, numpy as np; librosa.pyin(np.random.rand(8192), fmin=65, fmax=2093,
    sr=22050)' || exit 1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
timeout "${TEST_TIMEOUT:-180}" python3 -m pytest -q -rfEP -p no:cacheprovider -n 8 \
  -k "cuda or triton" tests/test_spectral.py tests/test_resample.py tests/test_pitch.py \
  tests/test_pyin.py tests/test_trim.py tests/test_world.py 2>&1 | tee "$out/pytest_cuda.log"
tests=${PIPESTATUS[0]}
timeout "${CHECK_TIMEOUT:-360}" python3 benchmarks/gpu_check.py "$out" "$@" 2>&1 \
  | tee "$out/gpu_check.log"
check=${PIPESTATUS[0]}
echo "pytest exit $tests, gpu_check exit $check"
exit $(( tests || check ))

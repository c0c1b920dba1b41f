#!/usr/bin/env bash
# Static kernel report (no GPU): every Triton kernel compiled for sm_90a/sm_100a/sm_120 with the CI's
# Triton (.venv) and with Triton 3.6 (the GPU machine's; a --no-deps install in .venv-triton36, used
# through PYTHONPATH beside .venv's CPU torch), every csrc/*.cu with nvcc; writes benchmarks/static/*.csv
# and benchmarks/STATIC.md and fails on the gate of `python -m pid.bench.static` (its docstring).
# Compiled kernels are cached in build/triton-cache, so a rerun compiles only what changed.
# Usage: scripts/static_report.sh [extra pid.bench.static arguments]   (env: CUDA_HOME, PID_STATIC_JOBS)
set -euo pipefail
cd "$(dirname "$0")/.."
export CUDA_HOME="${CUDA_HOME:-$( [ -d /usr/local/cuda-13.0 ] && echo /usr/local/cuda-13.0 || echo /usr/local/cuda )}"
TRITON36=.venv-triton36
if ! PYTHONPATH=$TRITON36 .venv/bin/python -c "import triton; assert triton.__version__.startswith('3.6')" 2>/dev/null; then
  rm -rf "$TRITON36"
  .venv/bin/python -m pip --disable-pip-version-check -q install --no-deps --target "$TRITON36" triton==3.6.0
fi
JOBS="${PID_STATIC_JOBS:-$(nproc)}"
status=0
TRITON_CACHE_DIR="$PWD/build/triton-cache/ci" .venv/bin/python -m pid.bench.static --jobs "$JOBS" "$@" || status=1
TRITON_CACHE_DIR="$PWD/build/triton-cache/3.6" PYTHONPATH="$PWD/$TRITON36" \
  .venv/bin/python -m pid.bench.static --jobs "$JOBS" --no-cuda "$@" || status=1
exit $status

#!/usr/bin/env bash
# Build check for the CUDA extension on a machine without a GPU (CI):
#   1. compile every csrc/*.cu with plain nvcc (no torch headers) for each target in
#      PID_CUDA_ARCHS (default 90a;100a;120a, plus compute_90 PTX) and print ptxas's
#      registers/spills per kernel and target;
#   2. build pid_kernels._C with setup.py in a CUDA-torch venv (.venv-cuda, created
#      here when missing: pip install torch==2.14.1 ninja pybind11 numpy pytest safetensors);
#   3. import it there and run tests/pid_kernels/cuda/test_loader.py (registration, no launches), then
#      remove the in-tree .so again (the CPU .venv cannot load it).
# Usage: .ci/build_cuda_ext.sh        (env: CUDA_HOME, PID_CUDA_VENV, PID_CUDA_ARCHS, MAX_JOBS)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
export CUDA_HOME="${CUDA_HOME:-$( [ -d /usr/local/cuda-13.0 ] && echo /usr/local/cuda-13.0 || echo /usr/local/cuda )}"
export PATH="$CUDA_HOME/bin:$PATH"
export PID_CUDA_ARCHS="${PID_CUDA_ARCHS:-90a;100a;120a}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"
VENV="${PID_CUDA_VENV:-$ROOT/.venv-cuda}"
OBJ="$ROOT/build/nvcc-check"
START=$SECONDS
stage() { echo "== [$((SECONDS - START))s] $*"; }

stage "venv $VENV"
if ! "$VENV/bin/python" -c "import torch, ninja, pytest, safetensors; assert torch.version.cuda" 2>/dev/null; then
  rm -rf "$VENV"
  "${PID_CUDA_PYTHON:-python3}" -m venv "$VENV"
  "$VENV/bin/pip" install -q torch==2.14.1 ninja pybind11 numpy pytest safetensors 2>&1 \
    | grep -v "^WARNING: Location" || true
fi
"$VENV/bin/python" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda)"
nvcc --version | tail -1

stage "nvcc: csrc/*.cu for $PID_CUDA_ARCHS (+compute_90 PTX), $MAX_JOBS jobs"
mkdir -p "$OBJ"
GENCODE=""
IFS=';' read -ra ARCHS <<< "${PID_CUDA_ARCHS//,/;}"
for arch in "${ARCHS[@]}"; do GENCODE+=" -gencode=arch=compute_${arch},code=sm_${arch}"; done
GENCODE+=" -gencode=arch=compute_90,code=compute_90"
compile() {  # csrc/<stem>.cu -> $OBJ/<stem>.o, ptxas's report in $OBJ/<stem>.log
  local stem
  stem=$(basename "$1" .cu)
  # shellcheck disable=SC2086  # GENCODE is a list of flags
  nvcc -std=c++17 -O3 -Werror all-warnings $GENCODE -Xptxas -v -c "$1" -o "$OBJ/$stem.o" > "$OBJ/$stem.log" 2>&1 \
    || { cat "$OBJ/$stem.log"; return 255; }
}
export -f compile
export GENCODE OBJ
ls csrc/*.cu | xargs -P "$MAX_JOBS" -I{} bash -c 'compile {}'
# One line per source and target: kernels compiled, most registers, spilled bytes.
SUMMARY='
  /Compiling entry function/ { match($0, /for .sm_[0-9a-z]+/); arch = substr($0, RSTART + 5, RLENGTH - 5); kernels[arch]++ }
  /Used [0-9]+ registers/ { match($0, /Used [0-9]+/); used = substr($0, RSTART + 5, RLENGTH - 5) + 0
                            if (used > registers[arch]) registers[arch] = used }
  /spill stores/ { spilled[arch] += $5 + $9 }
  END { for (a in kernels) printf "  %-22s %-8s %2d kernels, max %3d registers, %d bytes spilled\n",
                                  source, a, kernels[a], registers[a], spilled[a] }'
for log in "$OBJ"/*.log; do
  awk -v source="$(basename "$log" .log).cu" "$SUMMARY" "$log" | sort
done

stage "setup.py build_ext --inplace (pid_kernels._C)"
if ! PID_FORCE_CUDA_BUILD=1 "$VENV/bin/python" setup.py build_ext --inplace > "$OBJ/setup.log" 2>&1; then
  tail -n 60 "$OBJ/setup.log"
  exit 1
fi
grep -iE "warning|error" "$OBJ/setup.log" | grep -v "WARNING: Location" || true
ls pid_kernels/_C*.so

stage "import and registration tests"
"$VENV/bin/python" -m pytest -q -p no:cacheprovider tests/pid_kernels/cuda/test_loader.py
# The CPU venv shares this tree and cannot load this build; objects stay in build/ for
# the next (incremental) run.
rm -f pid_kernels/_C*.so
stage "done"

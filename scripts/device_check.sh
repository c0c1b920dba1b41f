#!/usr/bin/env bash
# On a GPU machine: build the CUDA extension for this GPU, run the whole test suite,
# compute-sanitizer memcheck and racecheck over them, and the op benchmarks.
#
# Usage: scripts/device_check.sh [STAGE...]   stages: test compile sanitize bench
#        (default: test sanitize bench; "compile" reruns the GPU tests under
#        PID_TEST_COMPILE=1, i.e. torch.compile(fullgraph=True) with inductor).
# The build runs first every time (incremental: seconds when nothing changed).
# Logs, benchmark CSVs and plots go to $OUT/device_check.tgz when $OUT is set (the
# device tool's return folder), else stay in build/device_check/ and benchmarks/results/.
# Env: PYTHON (default python3), PID_CUDA_ARCHS (default: this GPU's), MAX_JOBS.
set -uo pipefail

cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
LOGS=build/device_check
mkdir -p "$LOGS" benchmarks/results
STAGES=("$@")
[ ${#STAGES[@]} -eq 0 ] && STAGES=(test sanitize bench)
# The CUDA-extension op tests, which compute-sanitizer instruments; the test and compile
# stages run the whole suite (Triton ops, model, golden vectors) on the GPU.
CUDA_OP_TESTS=(tests/pid_kernels/cuda/test_*.py)
BENCHES=(rmsnorm_modulate gated_residual pit_pixel_mlp to_image)
declare -A RESULT
START=$SECONDS
stage() { echo "== [$((SECONDS - START))s] $*"; }
record() { RESULT[$1]="$2"; echo "-- $1: $2"; }

nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
"$PY" -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
nvcc --version | tail -1
export PID_CUDA_ARCHS="${PID_CUDA_ARCHS:-$("$PY" -c "
import torch
major, minor = torch.cuda.get_device_capability()
print(f'{major}{minor}' + ('a' if major in (9, 10, 12) else ''))")}"
export MAX_JOBS="${MAX_JOBS:-$(nproc)}"

stage "build pid_kernels._C for $PID_CUDA_ARCHS"
if PID_FORCE_CUDA_BUILD=1 "$PY" setup.py build_ext --inplace > "$LOGS/build.log" 2>&1; then
  record build "ok in $((SECONDS - START))s"
else
  tail -n 40 "$LOGS/build.log"
  record build FAILED
fi
"$PY" -c "from pid_kernels.cuda import loader; print('extension:', loader.load())"

for stage_name in "${STAGES[@]}"; do
  case "$stage_name" in
    test)
      stage "test suite on the GPU"
      "$PY" -m pytest -q -p no:cacheprovider -rs tests/ 2>&1 | tee "$LOGS/test.log" | tail -n 15
      record test "$(tail -n 1 "$LOGS/test.log")"
      ;;
    compile)
      stage "GPU op tests under torch.compile"
      PID_TEST_COMPILE=1 "$PY" -m pytest -q -p no:cacheprovider -m gpu tests/ 2>&1 \
        | tee "$LOGS/compile.log" | tail -n 15
      record compile "$(tail -n 1 "$LOGS/compile.log")"
      ;;
    sanitize)
      # Exact-size allocations, so reads past a tensor's end leave its allocation.
      export PYTORCH_NO_CUDA_MEMORY_CACHING=1
      FILTER=()  # instrument only our kernels (namespace pid) where the tool can filter
      [[ "$(compute-sanitizer --help 2>&1)" == *--kernel-name* ]] && FILTER=(--kernel-name kns=pid)
      for tool in memcheck racecheck; do
        stage "compute-sanitizer --tool $tool ${FILTER[*]}"
        compute-sanitizer --tool "$tool" "${FILTER[@]}" --error-exitcode 99 \
          "$PY" -m pytest -q -p no:cacheprovider -m gpu "${CUDA_OP_TESTS[@]}" > "$LOGS/$tool.log" 2>&1
        status=$?
        tail -n 8 "$LOGS/$tool.log"
        record "$tool" "exit $status, $(grep -E '(ERROR|RACECHECK) SUMMARY' "$LOGS/$tool.log" | tail -n 1)"
      done
      unset PYTORCH_NO_CUDA_MEMORY_CACHING
      ;;
    bench)
      for bench in "${BENCHES[@]}"; do
        stage "bench_$bench"
        "$PY" benchmarks/bench_$bench.py 2>&1 | tee "$LOGS/bench_$bench.log" | grep -vE "^(W|I)[0-9]{4}"
        record "bench_$bench" "exit ${PIPESTATUS[0]}"
      done
      ;;
    *) echo "unknown stage $stage_name (test compile sanitize bench)"; exit 2 ;;
  esac
done

if [ -n "${OUT:-}" ]; then
  tar czf "$OUT/device_check.tgz" "$LOGS" benchmarks/results
fi
stage "summary"
for key in "${!RESULT[@]}"; do printf "  %-28s %s\n" "$key" "${RESULT[$key]}"; done | sort

#!/usr/bin/env bash
# The device suite in one command: on a bare GPU machine, at most 8 minutes wall, everything
# that matters in order of value, each stage in its own time box (benchmarks/device_suite.py
# says what each stage does). A stage that overruns is cut, says so, and the summary is
# still written; the final table is printed last.
#
#   bash scripts/device_check.sh            on the GPU machine (python3 = the image's torch)
#   bash scripts/device_check.sh --dry-run  every stage on the CPU in reduced form (CI runs it);
#                                           timings meaningless, same files, same table
#
# Files come back in $OUT (default: build/device_check/out), 7 of them: ops.csv, decode.csv,
# suite.json, summary.txt, decode.png, ops.png, logs.tgz.
# Env: PYTHON (default python3; .venv/bin/python in a dry run when present), PID_OFFICIAL_PATH
# (default third_party/PiD when scripts/prepare_device_carry.sh has extracted it there),
# PID_SUITE_BUDGET_S (seconds for all stages, the summary and packing follow: 440 on the device,
# 900 in a dry run). Exit status 1 when a stage did not finish (cut, failed or skipped), else 0.
set -uo pipefail
cd "$(dirname "$0")/.."

DRY_RUN=0
[ "${1:-}" = "--dry-run" ] && DRY_RUN=1
[ $# -gt $DRY_RUN ] && { echo "usage: bash scripts/device_check.sh [--dry-run]" >&2; exit 2; }
START=$SECONDS
WORK=build/device_check
rm -rf "$WORK" && mkdir -p "$WORK/logs"
export OUT="${OUT:-$WORK/out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PID_SKIP_CUDA_BUILD=1  # no JIT build inside a stage: the build stage does it once
if [ -z "${PID_OFFICIAL_PATH:-}" ] && [ -f third_party/PiD/pid/_src/networks/pid_net.py ]; then
  export PID_OFFICIAL_PATH="$PWD/third_party/PiD"
fi
# Stage boxes in seconds: device, then dry run.
if [ $DRY_RUN = 1 ]; then
  PY="${PYTHON:-$([ -x .venv/bin/python ] && echo .venv/bin/python || echo python3)}"
  export TRITON_INTERPRET=1
  # Boxes here only guard against a hang (measured: 233 s wall in all on 2 cores shared with other jobs).
  declare -A BOX=([environment]=90 [correctness]=150 [decode]=300 [attention]=120 [ops]=150 [extra]=150)
  BUDGET=${PID_SUITE_BUDGET_S:-900}
  SUITE_FLAGS=(--dry-run)
else
  PY="${PYTHON:-python3}"
  # The decode box holds four compilations (b, c, d, f: inductor's default mode, tens of seconds each).
  declare -A BOX=([build]=180 [environment]=40 [correctness]=60 [decode]=240 [attention]=40 [ops]=50 [extra]=120)
  BUDGET=${PID_SUITE_BUDGET_S:-440}  # + the capability query, wheels and a 30 s summary: <= 8 minutes
  SUITE_FLAGS=()
fi
# Wheels that scripts/prepare_device_carry.sh put in the carry (nothing is downloaded here).
if compgen -G "third_party/wheels/*.whl" > /dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/pid_site \
    third_party/wheels/*.whl > "$WORK/logs/wheels.log" 2>&1 && export PYTHONPATH="/tmp/pid_site${PYTHONPATH:+:$PYTHONPATH}"
fi

record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$WORK/stages.tsv"; echo "-- $1: $2 (${3}s of ${4}s)"; }
# run_stage NAME: the stage in its own process, cut at min(its box, what is left of the budget).
run_stage() {
  local name=$1 left=$((BUDGET - (SECONDS - START))) box=${BOX[$1]}
  [ "$left" -lt "$box" ] && box=$left
  if [ "$box" -le 5 ]; then record "$name" "skipped: no time left" 0 "${BOX[$1]}"; return; fi
  echo "== [$((SECONDS - START))s] $name (box ${box}s)"
  local began=$SECONDS
  timeout --kill-after=10 "$box" "$PY" benchmarks/device_suite.py "$name" --work "$WORK" "${SUITE_FLAGS[@]}" \
    2>&1 | tee "$WORK/logs/$name.log" | grep --line-buffered -vE "^(W|I)[0-9]{4}|it/s\]$"
  local status=${PIPESTATUS[0]}
  case $status in
    0) record "$name" ok $((SECONDS - began)) "$box" ;;
    124|137) record "$name" "CUT at its time box" $((SECONDS - began)) "$box" ;;
    *) record "$name" "failed (exit $status; logs/$name.log)" $((SECONDS - began)) "$box" ;;
  esac
}

# The CUDA extension for this GPU only, in the background while the ceilings are measured.
if [ $DRY_RUN = 1 ]; then
  record build "skipped: dry run (.ci/build_cuda_ext.sh compiles it in CI)" 0 0
else
  ARCH=$("$PY" -c "import torch; m, n = torch.cuda.get_device_capability(); print(f'{m}{n}' + ('a' if m in (9, 10, 12) else ''))")
  BUILD_START=$SECONDS
  env -u PID_SKIP_CUDA_BUILD PID_CUDA_ARCHS="$ARCH" MAX_JOBS=$(nproc) PID_FORCE_CUDA_BUILD=1 timeout "${BOX[build]}" \
    "$PY" setup.py build_ext --inplace > "$WORK/logs/build.log" 2>&1 &
  BUILD_PID=$!
fi
run_stage environment
if [ $DRY_RUN = 0 ]; then
  wait $BUILD_PID
  status=$?
  case $status in
    0) record build "ok (sm_$ARCH)" $((SECONDS - BUILD_START)) "${BOX[build]}" ;;
    124) record build "CUT at its time box: CUDA ops use the reference" $((SECONDS - BUILD_START)) "${BOX[build]}" ;;
    *) record build "failed (exit $status; logs/build.log): CUDA ops use the reference" $((SECONDS - BUILD_START)) "${BOX[build]}"
       tail -n 20 "$WORK/logs/build.log" ;;
  esac
fi
for stage_name in correctness decode attention ops extra; do
  run_stage "$stage_name"
done

echo "== [$((SECONDS - START))s] summary: files in $OUT, the final table last"
tar czf "$OUT/logs.tgz" -C "$WORK" logs stages.tsv
timeout 30 "$PY" benchmarks/device_suite.py summary --work "$WORK" "${SUITE_FLAGS[@]}" 2>&1 | grep -vE "^(W|I)[0-9]{4}"
summary_status=${PIPESTATUS[0]}
unfinished=$(awk -F'\t' '$2 != "ok" && $1 != "build"' "$WORK/stages.tsv" | wc -l)
[ "$summary_status" = 0 ] && [ "$unfinished" = 0 ]

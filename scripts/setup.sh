#!/usr/bin/env bash
# Create .venv (if missing) and install pid-kernels into it, editable, with test extras.
# A torch already in .venv is kept (install your CUDA build first on a GPU machine);
# otherwise the CPU build torch==2.13.0 is installed. Re-running is cheap.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
VENV=${PID_VENV:-.venv}
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
if ! "$VENV/bin/python" -c "import torch" 2>/dev/null; then
    $PIP install "torch==${PID_TORCH_VERSION:-2.13.0}"
fi
$PIP install setuptools wheel
# --no-build-isolation: the optional CUDA extension builds against the torch in .venv
# instead of a second torch downloaded into an isolated build environment.
# serve: ray[serve] for the `pid serve` tests (about 2 minutes more on a fresh venv).
$PIP install --no-build-isolation -e ".[test,plot,serve]"

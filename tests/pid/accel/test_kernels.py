"""pid/accel/kernels.py: `import pid` loads neither pid_kernels nor triton; PID_FORCE_TRITON=1
switches every Triton op on when a PiDNet is built."""

import json
import os
import subprocess
import sys

from conftest import REPO

NOTHING_IMPORTED = r"""
import json, sys
import pid
print(json.dumps(sorted(m for m in sys.modules if m.split(".")[0] in ("pid_kernels", "triton"))))
"""

FORCED_AT_BUILD = r"""
import json, sys
import pid
from tiny import TINY_V1
before = sorted(m for m in sys.modules if m.split(".")[0] in ("pid_kernels", "triton"))
pid.build_model(TINY_V1)
import pid_kernels
triton_ops = sorted(n for n, op in pid_kernels.REGISTRY.items() if op.backend == "triton")
print(json.dumps({"before": before, "enabled": pid_kernels.enabled(), "triton_ops": triton_ops}))
"""


def _run(script: str, **env: str):
    environment = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", **env}
    run = subprocess.run([sys.executable, "-c", script], env=environment, capture_output=True, text=True,
                         timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.strip().splitlines()[-1])


def test_import_pid_imports_neither_pid_kernels_nor_triton():
    assert _run(NOTHING_IMPORTED) == []
    assert _run(NOTHING_IMPORTED, PID_FORCE_TRITON="1", TRITON_INTERPRET="1") == []


def test_force_triton_enables_every_triton_op_when_a_model_is_built():
    result = _run(FORCED_AT_BUILD, PID_FORCE_TRITON="1", TRITON_INTERPRET="1")
    assert result["before"] == []
    assert result["triton_ops"] and result["enabled"] == result["triton_ops"]

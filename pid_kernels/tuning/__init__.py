"""Launch configurations per GPU architecture, one small table per op in each arch file.

`config(op)` picks the table of the current GPU's architecture (sm90: H100/H200,
sm100: B200/GB200, sm120: RTX 5090); PID_TUNING_ARCH overrides the choice, and
PID_TUNING_<OP>=key=value,... overrides single entries (e.g.
PID_TUNING_ATTENTION=BLOCK_M=64,num_warps=4).
"""

from __future__ import annotations

import importlib
import os

from pid_kernels.runtime import tuning_arch

ARCHES = ("sm90", "sm100", "sm120")


def _parse(value: str):
    return int(value) if value.lstrip("-").isdigit() else value


def config(op: str, arch: str | None = None) -> dict:
    arch = arch or tuning_arch()
    if arch not in ARCHES:
        raise ValueError(f"PID_TUNING_ARCH={arch!r} is not one of {ARCHES}")
    table = getattr(importlib.import_module(f"pid_kernels.tuning.{arch}"), op.upper())
    chosen = dict(table)
    override = os.environ.get(f"PID_TUNING_{op.upper()}")
    if override:
        for item in override.split(","):
            key, _, value = item.partition("=")
            if key not in chosen:
                raise ValueError(f"PID_TUNING_{op.upper()}: unknown key {key!r}; keys: {sorted(chosen)}")
            chosen[key] = _parse(value)
    return chosen

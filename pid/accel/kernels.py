"""pid's door to pid_kernels, opened lazily: `import pid` loads neither pid_kernels nor triton.

pid_kernels imports pid (the seams its ops override), so pid imports pid_kernels only
inside functions: `pid.compile` and `pid info` when they look at the fused ops, and
`enable_forced_triton()` when a PiDNet is built under PID_FORCE_TRITON=1.
"""

from __future__ import annotations

import os


def force_triton() -> bool:
    """PID_FORCE_TRITON=1: run every Triton op, and fail rather than fall back."""
    return os.environ.get("PID_FORCE_TRITON") == "1"


def enable_forced_triton() -> None:
    """Under PID_FORCE_TRITON=1, switch every Triton op on, strictly (importing pid_kernels does
    it, once per process); otherwise nothing. PiDNet calls it when it is built, so
    `TRITON_INTERPRET=1 PID_FORCE_TRITON=1` runs any model through the kernels."""
    if force_triton():
        import pid_kernels  # noqa: F401  (enables the Triton ops on import)

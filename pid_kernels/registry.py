"""Fused ops plug into the seams of `pid.seams`; this module switches them on and off.

Each op module registers a `KernelOp`: the seam it replaces, an `impl` with the
seam's signature, and `supports(...)` with the same signature returning the
reasons it refuses an input (empty list = it runs). An enabled op falls back to
the seam's reference for inputs it refuses, except under PID_FORCE_TRITON=1,
where a refusal raises, so a test can prove the fused path really ran.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from pid import seams
from pid_kernels.runtime import force_triton


@dataclass(frozen=True)
class KernelOp:
    name: str  # e.g. "sigma_gate"; also the pid_kernels module and test/bench file stem
    seam: str  # the pid.seams seam it replaces
    backend: str  # "triton" or "cuda"
    impl: Callable
    supports: Callable[..., list[str]]


REGISTRY: dict[str, KernelOp] = {}
# How many times each enabled op ran fused / fell back (for reports and tests).
CALLS: dict[str, dict[str, int]] = {}
# Ops whose kernel raised on this machine, with the error; they fall back from then on.
FAILED: dict[str, str] = {}


def register(op: KernelOp) -> KernelOp:
    if op.seam not in seams.SEAMS:
        raise KeyError(f"{op.name}: unknown seam {op.seam!r}")
    REGISTRY[op.name] = op
    return op


class KernelRefused(RuntimeError):
    pass


def _guarded(op: KernelOp, strict: bool) -> Callable:
    reference = seams.SEAMS[op.seam].reference
    counts = CALLS.setdefault(op.name, {"fused": 0, "fallback": 0})

    def run(*args, **kwargs):
        reasons = op.supports(*args, **kwargs)
        if not reasons and op.name not in FAILED:
            try:
                result = op.impl(*args, **kwargs)
                counts["fused"] += 1
                return result
            except Exception as error:  # a kernel that fails to compile or launch on this machine
                if strict:
                    raise
                # Never fail where the reference would succeed: remember the failure, fall back.
                FAILED[op.name] = f"{type(error).__name__}: {error}"
                warnings.warn(f"fused op {op.name} failed ({FAILED[op.name]}); using the reference from now on")
        if strict:
            raise KernelRefused(f"{op.name} refused its input: {'; '.join(reasons)}")
        counts["fallback"] += 1
        return reference(*args, **kwargs)

    run.kernel_op = op
    return run


def enable(names: Optional[Iterable[str]] = None, strict: Optional[bool] = None) -> list[str]:
    """Route the named ops' seams (default: all registered) to their fused kernels."""
    strict = force_triton() if strict is None else strict
    chosen = list(REGISTRY) if names is None else list(names)
    for name in chosen:
        if name not in REGISTRY:
            raise KeyError(f"unknown fused op {name!r}; registered: {sorted(REGISTRY)}")
        op = REGISTRY[name]
        seams.override(op.seam, _guarded(op, strict))
    return chosen


def disable(names: Optional[Iterable[str]] = None) -> None:
    for name in list(REGISTRY) if names is None else names:
        op = REGISTRY[name]
        current = seams.active_overrides().get(op.seam)
        if current is not None and getattr(current, "kernel_op", None) is op:
            seams.override(op.seam, None)


def enabled() -> list[str]:
    return sorted(
        impl.kernel_op.name for impl in seams.active_overrides().values() if getattr(impl, "kernel_op", None)
    )

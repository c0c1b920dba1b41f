"""Fused ops plug into the seams of `pid.seams`; this module switches them on and off.

Each op module `pid_kernels/<backend>/<name>.py` registers one `KernelOp` named
`<name>`, which replaces the seam `pid.seams.<name>` (`register` refuses any other
name): an `impl` with the seam's signature, `supports(...)` with the same signature
returning the reasons it refuses an input (empty list = it runs), and the devices it
runs on (`Capability`, checked by `device_reasons` before any input is seen). An
enabled op falls back to the seam's reference for inputs it refuses, except under
PID_FORCE_TRITON=1, where a refusal raises, so a test can prove the fused path ran.

An op may have several backends (pit_pixel_mlp: Triton on the tensor cores and CUDA C++
on the CUDA cores), one module each under the same name. `choose(name, device)` picks
the one that runs: the arch's tuning table names it (`pid_kernels/tuning/<arch>.py`,
key "backend", with "measured" saying whether a device run chose it), and where that
backend refuses the device (its capability, Triton missing) another usable one runs
instead, with the reason in `Choice.why`. Inputs the chosen backend refuses fall back
to the seam's reference, as for any op.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

import torch

from pid import seams
from pid_kernels.cuda import loader
from pid_kernels.runtime import compute_capability, force_triton, triton_reasons_on, tuning_arch
from pid_kernels.tuning import config

BACKENDS = ("triton", "cuda")


@dataclass(frozen=True)
class Capability:
    """The CUDA GPUs an op's kernels can run on, as flashinfer's @supported_compute_capability
    states it on a function: compute capability `minimum` and newer; `why` says why not older."""

    minimum: tuple[int, int]
    why: str

    def reasons(self, capability: Optional[tuple[int, int]]) -> list[str]:
        """Why a GPU of this (major, minor) capability is refused (empty list: it is not)."""
        if capability is None or tuple(capability) >= self.minimum:
            return []
        major, minor = capability
        return [f"compute capability {major}.{minor} < {self.minimum[0]}.{self.minimum[1]} ({self.why})"]


# The capability every op of a backend needs unless its KernelOp says otherwise.
BACKEND_CAPABILITY = {
    "triton": Capability((8, 0), "Triton supports NVIDIA GPUs of compute capability 8.0 and newer"),
    # CUDA 13's nvcc builds nothing older than sm_75; csrc/ compiles for sm_75 (checked with nvcc 13.0).
    "cuda": Capability((7, 5), "csrc/ is built with CUDA 13, which targets sm_75 and newer"),
}


@dataclass(frozen=True)
class KernelOp:
    name: str  # e.g. "sigma_gate": the module pid_kernels/<backend>/<name>.py and the seam it replaces
    seam: str  # the pid.seams seam it replaces (== name for every op of pid_kernels)
    backend: str  # "triton" or "cuda"
    impl: Callable
    supports: Callable[..., list[str]]
    capability: Optional[Capability] = None  # None: the backend's (BACKEND_CAPABILITY)

    def device_reasons(self, device: torch.device, build: bool = True) -> list[str]:
        """Why this op cannot run for a model on `device` at all (empty list: it can; the
        refusals of particular inputs come from `supports`). build=False never starts the
        CUDA extension's JIT build: it reports what a first use would do (`pid info`)."""
        device = torch.device(device)
        if device.type == "cuda":
            capability = self.capability or BACKEND_CAPABILITY[self.backend]
            refused = capability.reasons(compute_capability(device))
            if refused:
                return refused
        if self.backend == "triton":
            return triton_reasons_on(device)
        if device.type != "cuda":
            return [f"{device.type} device (the CUDA extension needs a CUDA GPU)"]
        return loader.load_reasons(build)


# Op name -> the backend `choose` picks for this process's default device (the GPU if any).
REGISTRY: dict[str, KernelOp] = {}
# Op name -> backend -> KernelOp: every backend registered for the op.
BACKENDS_OF: dict[str, dict[str, KernelOp]] = {}
# How many times each enabled op ran fused / fell back (for reports and tests).
CALLS: dict[str, dict[str, int]] = {}
# Ops whose kernel raised on this machine, with the error; they fall back from then on.
FAILED: dict[str, str] = {}


def register(op: KernelOp) -> KernelOp:
    """Add `op` to REGISTRY. An op of pid_kernels itself must carry one name through every
    layer: module pid_kernels/<backend>/<name>.py, KernelOp.name and seam (tests and other
    packages may register ops of any name for any seam)."""
    if op.seam not in seams.SEAMS:
        raise KeyError(f"{op.name}: unknown seam {op.seam!r}")
    if op.backend not in BACKENDS:
        raise ValueError(f"{op.name}: backend {op.backend!r} is not one of {BACKENDS}")
    module = op.supports.__module__
    if module.startswith("pid_kernels."):
        expected = f"pid_kernels.{op.backend}.{op.name}"
        if module != expected or op.seam != op.name:
            raise ValueError(
                f"op {op.name!r} (seam {op.seam!r}) is defined in {module}: an op of pid_kernels lives in "
                f"{expected} and replaces the seam of its own name"
            )
    backends = BACKENDS_OF.setdefault(op.name, {})
    backends[op.backend] = op
    REGISTRY[op.name] = choose(op.name, build=False).op if len(backends) > 1 else op
    return op


@dataclass(frozen=True)
class Choice:
    """The backend of an op that runs on a device, and why (empty for an op with one backend)."""

    op: KernelOp
    why: str


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def choose(name: str, device: Optional[torch.device] = None, build: bool = True) -> Choice:
    """The backend of op `name` that runs for a model on `device` (default: the GPU if any):
    the one the arch's tuning table names, or, where it refuses the device and another
    backend does not, that one. build=False never starts the CUDA extension's JIT build."""
    backends = BACKENDS_OF.get(name, {})
    if len(backends) < 2:
        return Choice(REGISTRY[name], "")
    device = torch.device(device) if device is not None else default_device()
    arch = tuning_arch(device if device.type == "cuda" else None)
    table = config(name, arch)
    if table["backend"] not in backends:
        raise ValueError(f"{arch} tuning table {name.upper()}: backend {table['backend']!r} is not one of {sorted(backends)}")
    preferred = backends[table["backend"]]
    measured = "chosen by a device run" if table["measured"] == "yes" else "not measured yet"
    why = f"{arch} tuning table picks {preferred.backend} ({measured})"
    refused = preferred.device_reasons(device, build)
    if not refused:
        return Choice(preferred, why)
    for other in backends.values():
        if other is not preferred and not other.device_reasons(device, build):
            return Choice(other, f"{why}, which cannot run here ({'; '.join(refused)}): {other.backend} instead")
    return Choice(preferred, why)


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


def enable(
    names: Optional[Iterable[str]] = None, strict: Optional[bool] = None, device: Optional[torch.device] = None
) -> list[str]:
    """Route the named ops' seams (default: all registered) to their fused kernels: for an op
    with several backends, the one `choose` picks for `device` (default: REGISTRY's)."""
    strict = force_triton() if strict is None else strict
    chosen = list(REGISTRY) if names is None else list(names)
    for name in chosen:
        if name not in REGISTRY:
            raise KeyError(f"unknown fused op {name!r}; registered: {sorted(REGISTRY)}")
        op = REGISTRY[name] if device is None else choose(name, device).op
        seams.override(op.seam, _guarded(op, strict))
    return chosen


def disable(names: Optional[Iterable[str]] = None) -> None:
    for name in list(REGISTRY) if names is None else names:
        seam = REGISTRY[name].seam
        current = getattr(seams.active_overrides().get(seam), "kernel_op", None)
        if current is not None and current.name == name:  # whichever of its backends runs
            seams.override(seam, None)


def enabled() -> list[str]:
    return sorted(
        impl.kernel_op.name for impl in seams.active_overrides().values() if getattr(impl, "kernel_op", None)
    )


def failed() -> list[str]:
    """The ops whose kernel raised on this machine; they run the reference from then on."""
    return sorted(FAILED)

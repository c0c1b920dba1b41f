"""pid_kernels: fused Triton and CUDA ops for PiD, one module per op.

Every op module `pid_kernels/<backend>/<name>.py` holds the op's PyTorch reference
(`pid.seams.<name>`), its kernel, its `torch.library` registration with a fake
implementation, and `supports(...)`. `enable()` routes the model's seams to the
kernels; `PID_FORCE_TRITON=1` in the environment enables every Triton op at import,
strictly (`import pid` does not import this package; building a PiDNet does, then).
"""

from pid_kernels.registry import (
    BACKENDS,
    BACKENDS_OF,
    CALLS,
    REGISTRY,
    Capability,
    Choice,
    KernelOp,
    KernelRefused,
    choose,
    disable,
    enable,
    enabled,
    failed,
    register,
)
from pid_kernels.runtime import force_triton

__all__ = [
    "BACKENDS_OF", "CALLS", "REGISTRY", "Capability", "Choice", "KernelOp", "KernelRefused", "choose", "disable",
    "enable", "enabled", "failed", "register",
]

# `loader` is the CUDA extension's loader, not an op; modules named _* hold shared helpers.
_NOT_OPS = {"loader"}


def _import_ops() -> None:
    """Import every op module; each registers its KernelOp(s) on import."""
    import importlib
    import pkgutil

    from pid_kernels.runtime import triton

    for package in BACKENDS:
        for module in pkgutil.iter_modules([f"{__path__[0]}/{package}"]):
            if module.name in _NOT_OPS or module.name.startswith("_"):
                continue
            try:
                importlib.import_module(f"pid_kernels.{package}.{module.name}")
            except (ImportError, AttributeError):
                if triton is not None:
                    raise
                # Without triton, Triton op modules cannot even define their kernels.
                UNAVAILABLE[module.name] = "triton is not installed"


# Op modules that could not be imported, with the reason.
UNAVAILABLE: dict[str, str] = {}


_import_ops()

if force_triton():
    enable([name for name, op in REGISTRY.items() if op.backend == "triton"], strict=True)

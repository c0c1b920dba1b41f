"""The CUDA extension (csrc/): the torch.ops.pid_cuda operators and where their kernels come from.

On first use the kernels are looked for, in this order:
  AOT          `pid_kernels._C`, built by setup.py (`pip install --no-build-isolation -e .`
               or `python setup.py build_ext --inplace`);
  JIT          csrc/ compiled by torch.utils.cpp_extension.load for this GPU into
               ~/.cache/pid_kernels/<torch version>-<hash of sources and flags> (minutes,
               once), when the AOT module is absent, torch is a CUDA build and nvcc is found;
  unavailable  with the reason; the ops then refuse CUDA tensors and the seams fall
               back to their PyTorch references.
PID_SKIP_CUDA_BUILD=1 turns the JIT build off too; PID_CUDA_ARCHS picks its targets
(default: the current GPU's).

The operator schemas are declared here, not in C++, so their fake implementations
(shapes for torch.compile) and CPU implementations (the references, for running
compiled graphs on CPU) exist everywhere; the library only adds the CUDA kernels.
"""

from __future__ import annotations

import hashlib
import importlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

import torch

NAMESPACE = "pid_cuda"
CSRC = Path(__file__).resolve().parents[2] / "csrc"
_JIT_NAME = "pid_cuda_kernels"


@dataclass(frozen=True)
class Status:
    path: str  # "AOT", "JIT" or "unavailable"
    detail: str

    @property
    def available(self) -> bool:
        return self.path != "unavailable"

    def __str__(self) -> str:
        return f"{self.path}: {self.detail}"


_loaded: Optional[Status] = None


def define(schema: str, fake: Callable, cpu: Callable):
    """Declare torch.ops.pid_cuda.<name> from "name(args) -> results" with its fake and CPU
    implementations; returns the operator."""
    name, _, signature = schema.partition("(")
    qualname = f"{NAMESPACE}::{name}"
    torch.library.define(qualname, "(" + signature)
    torch.library.register_fake(qualname, fake)
    torch.library.impl(qualname, "CPU", cpu)
    return getattr(getattr(torch.ops, NAMESPACE), name)


def load() -> Status:
    """Make the CUDA kernels available (building them by JIT if need be) and say how."""
    global _loaded
    if _loaded is None:
        _loaded = _load(build=True)
    return _loaded


def status() -> Status:
    """The path in effect (for `pid info`); never starts a build."""
    return _loaded if _loaded is not None else _load(build=False)


def _load(build: bool) -> Status:
    # Loading a library twice (status() then load()) is harmless: dlopen returns the
    # same handle and its registrations run once.
    try:
        module = importlib.import_module("pid_kernels._C")
        return Status("AOT", f"pid_kernels._C ({module.__file__})")
    except ModuleNotFoundError as error:
        if error.name != "pid_kernels._C":
            raise
        aot = "no AOT build"
    except (ImportError, OSError) as error:  # built against another torch or CUDA
        aot = f"pid_kernels._C does not load with torch {torch.__version__}: {error}"
    reasons = _jit_reasons()
    if reasons:
        return Status("unavailable", f"{aot}; no JIT build: {'; '.join(reasons)}")
    flags = _cuda_flags()
    directory = _jit_directory(flags)
    library = directory / f"{_JIT_NAME}.so"
    if library.is_file():
        torch.ops.load_library(str(library))
        return Status("JIT", f"{library}")
    if not build:
        return Status("JIT", f"{aot}; builds on first use into {directory}")
    warnings.warn(f"pid_kernels: building the CUDA extension into {directory} (first use only; minutes)")
    try:
        from torch.utils import cpp_extension

        directory.mkdir(parents=True, exist_ok=True)
        cpp_extension.load(
            name=_JIT_NAME,
            sources=[str(path) for path in _sources()],
            extra_include_paths=[str(CSRC)],
            extra_cflags=["-O3"],  # torch adds the C++ standard its headers need
            extra_cuda_cflags=flags,
            build_directory=str(directory),
            is_python_module=False,
        )
    except Exception as error:  # a failed build must leave the references running
        message = str(error).strip().splitlines()
        detail = f"{aot}; JIT build failed in {directory}: {message[-1] if message else type(error).__name__}"
        warnings.warn(f"pid_kernels: {detail}")
        return Status("unavailable", detail)
    return Status("JIT", f"built into {library}")


def _sources() -> list[Path]:
    return sorted(CSRC.glob("*.cu")) + [CSRC / "bindings.cpp"]


def _jit_reasons() -> list[str]:
    if os.environ.get("PID_SKIP_CUDA_BUILD") == "1":
        return ["PID_SKIP_CUDA_BUILD=1"]
    if torch.version.cuda is None:
        return [f"torch {torch.__version__} is a CPU build"]
    if not (CSRC / "bindings.cpp").is_file():
        return [f"the CUDA sources are not installed ({CSRC})"]
    from torch.utils.cpp_extension import CUDA_HOME

    if CUDA_HOME is None:
        return ["no CUDA toolchain found (set CUDA_HOME)"]
    if not os.environ.get("PID_CUDA_ARCHS") and not torch.cuda.is_available():
        return ["no CUDA GPU to build for (set PID_CUDA_ARCHS)"]
    return []


def _cuda_flags() -> list[str]:
    archs = os.environ.get("PID_CUDA_ARCHS")
    if not archs:
        major, minor = torch.cuda.get_device_capability()
        archs = f"{major}{minor}"
    targets = [arch for arch in archs.replace(",", ";").split(";") if arch]
    return ["-O3", *(f"-gencode=arch=compute_{arch},code=sm_{arch}" for arch in targets)]


def _jit_directory(flags: list[str]) -> Path:
    digest = hashlib.sha256(" ".join(flags).encode())
    for path in _sources() + sorted(CSRC.glob("*.h")) + sorted(CSRC.glob("*.cuh")):
        digest.update(path.name.encode() + path.read_bytes())
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "pid_kernels" / f"{torch.__version__}-{digest.hexdigest()[:12]}"


def load_reasons(build: bool = True) -> list[str]:
    """Why the CUDA kernels cannot run here (empty list: they can). Builds them by JIT if need
    be; with build=False only reports what a first use would do."""
    extension = load() if build else status()
    return [] if extension.available else [f"CUDA extension unavailable ({extension})"]


@torch.compiler.assume_constant_result
def _unavailable_reason() -> str:
    """load_reasons() as one constant string, so torch.compile does not trace the loader."""
    return "; ".join(load_reasons())


def device_reasons(*tensors: Optional[torch.Tensor]) -> list[str]:
    """Why the CUDA kernels cannot take these tensors (empty list: they can)."""
    present = [tensor for tensor in tensors if tensor is not None]
    for tensor in present:
        if tensor.device.type != "cuda":
            return [f"{tensor.device.type.upper()} tensor (the pid_cuda kernels run on CUDA tensors only)"]
    if len({tensor.device for tensor in present}) > 1:
        return ["tensors on different devices"]
    if torch.is_grad_enabled() and any(tensor.requires_grad for tensor in present):
        return ["inputs require grad (the kernels have no backward; run under torch.inference_mode())"]
    unavailable = _unavailable_reason()
    return [unavailable] if unavailable else []
